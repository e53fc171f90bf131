"""Train LSeg on ADE20K (or the synthetic ADE20K-layout set) with MindSpore.

    python train_custom.py --preset tiny                      # CPU quick start on datasets/synthetic_ade20k
    python train_custom.py --preset vitl16_ade20k --device_target Ascend --data_path ../datasets

Writes to ``checkpoints/<exp_name>/``: ``epoch_XXX.ckpt`` (last K), ``last.ckpt``, ``best.ckpt``, ``metrics.jsonl``
(one line per epoch), ``steps.jsonl`` (one line per optimizer step) and ``curves.png``. ``--resume`` continues
exactly where the last completed epoch ended. Exit status: 0 done, 2 bad option, 3 non-finite loss.

The helpers here (network building, weight loading, class subsets) are shared with ``test.py``.
"""
import json
import os
import sys
import zipfile
from typing import List, Optional, Sequence, Tuple

import numpy as np

from options import OptionError, effective_lr, experiment_dir, parse_options, resolve_resume_path

ALL_CLASSES = "all"
SYNTHETIC_CLASSES = "synthetic"


# ------------------------------------------------------------------------------------------------------- context
def configure_context(args) -> None:
    """Set device and execution mode, join a data-parallel job if a launcher started us, seed everything.

    Args:
        args: parsed options (``device_target``, ``device_id``, ``mode``, ``seed``).
    """
    import random

    import mindspore as ms

    from encoding_custom.engine.distributed import init_distributed

    mode = ms.GRAPH_MODE if args.mode == "graph" else ms.PYNATIVE_MODE
    ms.set_context(mode=mode, device_target=args.device_target)
    if args.device_id is not None:
        ms.set_context(device_id=args.device_id)
    init_distributed(args.device_target, mode=mode)
    random.seed(args.seed)
    np.random.seed(args.seed)
    ms.set_seed(args.seed)


# ------------------------------------------------------------------------------------------------------- classes
def resolve_classes(classes: str, data_path: str) -> Tuple[List[str], Optional[List[int]]]:
    """The label list the network is trained/evaluated with.

    Args:
        classes: ``"all"`` (the 150 ADE20K classes), ``"synthetic"`` (the classes listed in the synthetic set's
            ``SYNTHETIC.json``) or comma-separated ADE20K class names.
        data_path: data root (for ``"synthetic"``).

    Returns:
        ``(label names, ADE20K class indices 0..149 or None for all)``.

    Raises:
        OptionError: naming ``--classes``.
    """
    from encoding_custom.labels import ade20k_labels
    from encoding_custom.layout import SYNTHETIC_MARKER, dataset_dir

    names = ade20k_labels()
    if classes == ALL_CLASSES:
        return names, None
    if classes == SYNTHETIC_CLASSES:
        marker = os.path.join(dataset_dir(data_path), SYNTHETIC_MARKER)
        if not os.path.isfile(marker):
            raise OptionError("--classes: 'synthetic' needs %s (written by prepare_ade20k.py --synthetic) "
                              "(got %r)" % (marker, classes))
        with open(marker, encoding="utf-8") as handle:
            values = json.load(handle)["class_values"]
        indices = [int(v) - 1 for v in values]
    else:
        wanted = [part.strip() for part in classes.split(",") if part.strip()]
        unknown = [w for w in wanted if w not in names]
        if not wanted or unknown:
            raise OptionError("--classes: unknown ADE20K class names %s (got %r)" % (unknown, classes))
        indices = [names.index(w) for w in wanted]
    return [names[i] for i in indices], indices


class ClassSubset:
    """A segmentation dataset restricted to some ADE20K classes: mask values are renumbered 0..K-1 in the given
    order and every other class becomes ``ignore_index``.

    Args:
        dataset: ``→ (image (3,H,W), mask (H,W) int32 in 0..149 or ignore_index)``.
        class_indices: the kept ADE20K indices.
        ignore_index: value of pixels outside the subset.
    """

    def __init__(self, dataset, class_indices: Sequence[int], ignore_index: int = -1):
        self.dataset = dataset
        self.ignore_index = ignore_index
        self.lookup = np.full(151, ignore_index, dtype=np.int32)  # slot 150 serves masks already at -1
        for new, old in enumerate(class_indices):
            self.lookup[old] = new

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to the wrapped dataset (per-epoch augmentation)."""
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        """Returns: ``(image, mask int32 (H,W) in 0..K-1 or ignore_index)``."""
        image, mask = self.dataset[index]
        mask = np.asarray(mask)
        remapped = self.lookup[np.where((mask >= 0) & (mask < 150), mask, 150)]
        return image, remapped

    def __getattr__(self, name):
        # images/masks/num_class etc. of the wrapped dataset (used by test.py for file names)
        return getattr(self.dataset, name)


# ------------------------------------------------------------------------------------------------------- network
def build_network(args, labels: Sequence[str]):
    """Build LSegNet from the options and load ``--clip_weights`` / ``--vit_weights`` when given.

    Args:
        args: options (backbone, text_config, arch_option, block_depth, activation, clip_weights, vit_weights).
        labels: label list of the network.

    Returns:
        the LSegNet.

    Raises:
        OptionError: unknown ``--backbone`` or ``--text_config``.
    """
    import clip_ms
    from modules import BACKBONES, LSegNet

    if args.backbone not in BACKBONES:
        raise OptionError("--backbone: unknown backbone, choose from %s (got %r)" % (sorted(BACKBONES), args.backbone))
    if args.text_config not in clip_ms.TEXT_CONFIGS:
        raise OptionError("--text_config: choose from %s (got %r)" % (sorted(clip_ms.TEXT_CONFIGS), args.text_config))
    net = LSegNet(args.backbone, labels=list(labels), arch_option=args.arch_option, block_depth=args.block_depth,
                  activation=args.activation, text_config=args.text_config)
    if getattr(args, "clip_weights", None):
        load_text_encoder_weights(net, args.clip_weights)
    if getattr(args, "vit_weights", None):
        from modules.weights import init_backbone_from_pretrained
        init_backbone_from_pretrained(net, args.vit_weights)
    return net


def load_text_encoder_weights(net, path: str) -> None:
    """Load a CLIP text tower ``.ckpt`` (``python -m clip_ms.convert``) into ``net.clip_pretrained``, strictly.

    Raises:
        OptionError: naming ``--clip_weights`` and the missing/mismatched parameters.
    """
    import mindspore as ms

    stored = ms.load_checkpoint(path)
    prefix = "clip_pretrained."
    missing, mismatched = [], []
    for param in net.clip_pretrained.get_parameters():
        key = param.name[len(prefix):] if param.name.startswith(prefix) else param.name
        value = stored.get(key, stored.get(param.name))
        if value is None:
            missing.append(key)
        elif tuple(value.shape) != tuple(param.shape):
            mismatched.append("%s %s vs %s" % (key, tuple(value.shape), tuple(param.shape)))
        else:
            param.set_data(ms.Tensor(value.asnumpy()))
    if missing or mismatched:
        raise OptionError("--clip_weights: %s does not fit --text_config %s: missing %s, mismatched %s"
                          % (path, net.text_config_name, missing[:5], mismatched[:5]))
    net.invalidate_text_cache()


def is_torch_file(path: str) -> bool:
    """True for files written by ``torch.save`` (zip archive or legacy pickle), i.e. official checkpoints."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as handle:
        return handle.read(1) == b"\x80"


def checkpoint_kind(path: str) -> str:
    """``"official"`` (PyTorch lang-seg), ``"training"`` (ours, from train_custom.py) or ``"weights"``
    (``modules.weights`` format)."""
    if is_torch_file(path):
        return "official"
    import mindspore as ms
    raw = ms.load_checkpoint(path)
    return "training" if "lseg_ckpt_format" in raw else "weights"


def load_network_weights(net, path: str) -> None:
    """Load network weights from any supported checkpoint into an already built ``net`` (strict).

    Args:
        net: LSegNet built with the checkpoint's architecture options and label count.
        path: our training ``.ckpt``, a ``modules.weights`` ``.ckpt`` or an official PyTorch ``.ckpt``.
    """
    kind = checkpoint_kind(path)
    if kind == "training":
        from encoding_custom.engine import load_checkpoint
        load_checkpoint(path, net, strict=True)
        net.invalidate_text_cache()
    elif kind == "weights":
        from modules.weights import load_lseg_checkpoint
        load_lseg_checkpoint(net, path)
    else:
        import tempfile

        from modules.weights import convert_official_checkpoint, load_lseg_checkpoint
        with tempfile.TemporaryDirectory() as folder:
            converted = os.path.join(folder, "converted.ckpt")
            convert_official_checkpoint(path, converted, backbone=net.cfg.name)
            load_lseg_checkpoint(net, converted)


# ---------------------------------------------------------------------------------------------------------- data
def make_dataset(args, split: str, mode: str, class_indices: Optional[Sequence[int]]):
    """ADE20KSegmentation for ``split``/``mode``, restricted to ``class_indices`` when given."""
    from encoding_custom.datasets import ADE20KSegmentation

    dataset = ADE20KSegmentation(args.data_path, split=split, mode=mode, base_size=args.base_size,
                                 crop_size=args.crop_size, seed=args.seed)
    if class_indices is not None:
        dataset = ClassSubset(dataset, class_indices, args.ignore_index)
    return dataset


def options_record(args) -> dict:
    """The JSON-serialisable options stored in every checkpoint (test.py rebuilds the network from them)."""
    return {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, list, type(None)))}


# ---------------------------------------------------------------------------------------------------------- main
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse options, build everything, train. Returns the process exit status."""
    args = parse_options(argv, for_training=True)
    try:
        resume_path = resolve_resume_path(args)
        configure_context(args)
        labels, class_indices = resolve_classes(args.classes, args.data_path)
        net = build_network(args, labels)
    except OptionError as err:
        print("train_custom.py: error: %s" % err, file=sys.stderr)
        return 2

    from encoding_custom.engine import NonFiniteLossError, TrainConfig, Trainer, get_world_size, is_main_process
    from encoding_custom.losses import SegmentationLoss

    if args.weights and resume_path is None:
        load_network_weights(net, args.weights)
    world_size = get_world_size()
    lr = effective_lr(args.base_lr, args.batch_size, world_size)
    exp_dir = experiment_dir(args)
    config = TrainConfig(lr=lr, max_epochs=args.max_epochs, batch_size=args.batch_size, momentum=args.momentum,
                         weight_decay=args.weight_decay, accumulate_grad_batches=args.accumulate_grad_batches,
                         amp_level=args.amp_level, exp_dir=exp_dir, keep_last=args.keep_last, seed=args.seed,
                         workers=args.workers, max_train_images=args.max_train_images,
                         max_val_images=args.max_val_images, val_batch_size=args.batch_size,
                         options=options_record(args), overwrite=args.overwrite)
    train_set = make_dataset(args, "train", "train", class_indices)
    val_set = make_dataset(args, "val", "val", class_indices)
    trainer = Trainer(net, SegmentationLoss(ignore_index=args.ignore_index), train_set, config,
                      param_groups=[(net.backbone_params(), 1.0), (net.head_params(), 10.0)],
                      val_set=val_set, nclass=len(labels))
    main_process = is_main_process()
    if main_process:
        print("training %s (%d labels) on %s: %d train / %d val images, %d device(s), lr %.3g (head %.3g), "
              "%d optimizer steps per epoch, %s mode -> %s"
              % (args.backbone, len(labels), args.data_path, trainer.loader.n_items, len(val_set), world_size,
                 lr, lr * 10, trainer.steps_per_epoch, args.mode, exp_dir), flush=True)
    if resume_path is not None:
        meta = trainer.resume(resume_path)
        if main_process:
            print("resumed from %s after epoch %d (optimizer step %d)" % (resume_path, meta["epoch"],
                                                                       trainer.global_step), flush=True)
    if world_size > 1:
        # Every rank seeds alike and reads the same files, but data parallelism is only correct from identical
        # weights: make it certain, as DDP does at construction.
        from encoding_custom.engine.distributed import broadcast_from_rank0
        broadcast_from_rank0(net)
    try:
        history = trainer.fit()
    except NonFiniteLossError as err:
        print("train_custom.py: %s" % err, file=sys.stderr)
        return 3
    except FileExistsError as err:
        print("train_custom.py: error: %s" % err, file=sys.stderr)
        return 2
    if main_process and history:
        last = history[-1]
        print("done: epoch %d, pixAcc %.4f, mIoU %.4f (best %.4f). Checkpoints, metrics.jsonl and curves.png in %s"
              % (last["epoch"], last.get("pixAcc", float("nan")), last.get("mIoU", float("nan")),
                 last.get("best_mIoU", float("nan")), exp_dir), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
