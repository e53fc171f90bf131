"""Train LSeg on ADE20K (or the synthetic ADE20K-layout set) with MindSpore.

    python train_custom.py --preset tiny                      # CPU quick start on datasets/synthetic_ade20k
    python train_custom.py --preset vitl16_ade20k --device_target Ascend --data_path ../datasets

Writes to ``checkpoints/<exp_name>/``: ``epoch_XXX.ckpt`` (last K), ``last.ckpt``, ``best.ckpt``, ``metrics.jsonl``
(one line per epoch), ``steps.jsonl`` (one line per optimizer step) and ``curves.png``. ``--resume`` continues
exactly where the last completed epoch ended. Exit status: 0 done, 2 bad option, 3 non-finite loss.

The option-to-library glue here (context, classes, network, dataset) is shared with ``test.py``.
"""
import sys
from typing import List, Optional, Sequence, Tuple

from modules import tnn
from options import OptionError, effective_lr, experiment_dir, parse_options, resolve_resume_path


# ------------------------------------------------------------------------------------------ options -> library
def configure_context(args) -> None:
    """Device, mode, data-parallel group and seeds from the options (``encoding_custom.engine.configure_runtime``)."""
    from encoding_custom.engine import configure_runtime

    configure_runtime(args.device_target, args.mode, device_id=args.device_id, seed=args.seed)


def resolve_classes(args, data_path: Optional[str] = None) -> Tuple[List[str], Optional[List[int]]]:
    """``--classes`` as ``(label names, ADE20K class indices or None)``; raises OptionError naming it."""
    from encoding_custom.labels import resolve_classes as resolve

    try:
        return resolve(args.classes, data_path or args.data_path, source="--classes")
    except ValueError as err:
        raise OptionError(str(err)) from err


def build_network(args, labels: Sequence[str]):
    """LSegNet from the architecture options, with ``--clip_weights`` / ``--vit_weights`` loaded when given."""
    from modules.factory import build_lseg

    try:
        return build_lseg(args.backbone, labels, arch_option=args.arch_option, block_depth=args.block_depth,
                          activation=args.activation, text_config=args.text_config,
                          clip_weights=getattr(args, "clip_weights", None),
                          vit_weights=getattr(args, "vit_weights", None))
    except ValueError as err:  # unknown backbone/text config, weights that do not fit: named in the message
        raise OptionError(str(err)) from err


def make_dataset(args, split: str, mode: str, class_indices: Optional[Sequence[int]]):
    """ADE20K ``split``/``mode`` from the data options, restricted to ``class_indices`` when given."""
    from encoding_custom.datasets import build_ade20k

    return build_ade20k(args.data_path, split, mode, base_size=args.base_size, crop_size=args.crop_size,
                        seed=args.seed, class_indices=class_indices, ignore_index=args.ignore_index)


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
        labels, class_indices = resolve_classes(args)
        net = build_network(args, labels)
    except OptionError as err:
        print("train_custom.py: error: %s" % err, file=sys.stderr)
        return 2

    from encoding_custom.engine import NonFiniteLossError, TrainConfig, Trainer, get_world_size, is_main_process
    from encoding_custom.losses import SegmentationLoss

    if args.weights and resume_path is None:
        from modules.factory import load_network_weights
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
              "%d optimizer steps per epoch, %s mode (%s) -> %s"
              % (args.backbone, len(labels), args.data_path, trainer.loader.n_items, len(val_set), world_size,
                 lr, lr * 10, trainer.steps_per_epoch, args.mode, tnn.describe(), exp_dir), flush=True)
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
