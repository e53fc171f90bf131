"""The zero-shot benchmarks (PASCAL-5i, COCO-20i, FSS-1000) by HSNet's protocol: a fold trains on its training
classes only, each image against the label pair ``['others', class]``; its test classes are never a label and their
pixels are ignored; validation and test.py run the fold's unseen classes as episodes (mIoU / FB-IoU)."""
import argparse
import copy
import os
import sys
import time
from typing import Dict, List, Optional, Tuple

from encoding_custom.engine.losses import SegmentationLoss
from encoding_custom.evaluation.zero_shot import EpisodeForward, episode_validator, evaluate_episodes
from encoding_custom.fewshot import (
    BENCHMARKS,
    FOLDS_PER_BENCHMARK,
    benchmark_labels,
    fold_class_ids,
    make_fewshot_dataset,
)
from encoding_custom.fewshot.episodes import HSNET_IMAGE_SIZE
from encoding_custom.fewshot.layout import check_fewshot_layout
from encoding_custom.fewshot.training import FoldTrainingSet
from encoding_custom.tasks.base import OptionError, Task, make_output_folder
from encoding_custom.tasks.networks import load_network
from foundation.atomic import append_text
from modules.config import get_backbone_config
from modules.lseg import zero_shot_labels


class ZeroShotBenchmarkTask(Task):
    """One fold of a zero-shot benchmark (``--dataset pascal|coco|fss --fold K``); test.py also takes ``--fold all``.
    """

    unit = "episodes"
    headline_metric = "FB-IoU"

    def training_labels(self) -> Tuple[List[str], Optional[List[int]]]:
        # The fold's training pairs decide the label list, so the training set is read before the network is built.
        args = self.args
        if not args.no_data_check:
            check_benchmark_files(args)
        self.normalisation = backbone_normalisation(args.backbone)
        self.train_set = make_fold_training_set(args, self.normalisation)
        return zero_shot_labels(self.train_set.label_names(benchmark_labels(args.dataset))), None

    def training_sets(self, exp_dir: str, world_size: int, main_process: bool):
        return self.train_set, make_episodes(self.args, self.args.fold, self.normalisation, split="val")

    def trainer_parts(self, net, labels: List[str], val_set):
        args = self.args
        validator = episode_validator(val_set, benchmark_labels(args.dataset), batch_size=args.batch_size,
                                      max_episodes=args.max_val_images)
        # The fold targets mark ignored pixels -1 whatever --ignore_index says (the official command lines pass 255);
        # the fold's training set takes --max_train_images itself (a seeded choice over all its classes).
        return SegmentationLoss(ignore_index=-1), dict(train_network=EpisodeForward(net), nclass=2,
                                                       validator=validator), None

    def summary(self, labels: List[str], val_set) -> str:
        return "%s fold %s: %d training classes, %d unseen" % (self.args.dataset, self.args.fold, len(labels) - 1,
                                                                len(val_set.class_ids))

    def evaluate(self, outdir: str) -> None:
        make_output_folder(outdir)
        run_zero_shot(self.args, outdir)


FOLD_PLACEHOLDER = "{fold}"  # in --exp_name / --weights: replaced by the fold


def selected_folds(args: argparse.Namespace) -> List[str]:
    """The folds a run covers: ``--fold`` itself, or every fold of the benchmark for ``--fold all``.

    Returns:
        fold names (``["0"]`` for ADE20K, which has none).
    """
    if args.dataset in BENCHMARKS and args.fold == "all":
        return [str(fold) for fold in range(FOLDS_PER_BENCHMARK[args.dataset])]
    return [args.fold]


def fold_weights(args: argparse.Namespace, fold: str) -> Optional[str]:
    """``--weights`` of one fold: ``{fold}`` in the path is replaced by it (``pascal_fold{fold}.ckpt``)."""
    return None if args.weights is None else args.weights.replace(FOLD_PLACEHOLDER, str(fold))


def backbone_normalisation(backbone) -> str:
    """The image normalisation a backbone was trained with: ``"vit"`` (mean = std = 0.5) or ``"imagenet"``
    (the ResNet-101 of the zero-shot networks), from ``modules.config``."""
    return get_backbone_config(backbone).normalisation


def make_episodes(args, fold: str, normalisation: str, split: str = "test"):
    """The episodes of one fold of ``--dataset``: ``test`` (HSNet's 1000 test episodes; FSS-1000's test classes) or
    ``val`` (the training validation: the same unseen classes for PASCAL/COCO, FSS-1000's val classes), resized to
    ``--crop_size`` (480 officially) with the backbone's normalisation.

    Raises:
        encoding_custom.fewshot.FewShotDataError: missing folders or files, named.
    """
    return make_fewshot_dataset(args.dataset, args.data_path, int(fold), split, shot=0, img_size=args.crop_size,
                                normalisation=normalisation)


def check_benchmark_files(args) -> None:
    """Every image and mask the split lists of ``--dataset`` name is on disk under ``--data_path`` (a file that is
    missing would otherwise stop a run when it is first read, maybe hours in).

    Raises:
        OptionError: naming ``--data_path``, the first problem and the command that lists them all.
    """
    report = check_fewshot_layout(args.data_path, args.dataset)
    if not report.ok:
        skip = ", --no_data_check skips this check" if hasattr(args, "no_data_check") else ""
        raise OptionError("--data_path: the %s files under %s are incomplete (%d problem(s)), first: %s; "
                          "`python -m scripts.prepare_fewshot %s --root %s --check` lists them%s"
                          % (args.dataset, args.data_path, len(report.problems), report.problems[0], args.dataset,
                             args.data_path, skip))


def make_fold_training_set(args, normalisation: str) -> FoldTrainingSet:
    """The training episodes of ``--fold`` (its training classes only; its test classes' pixels ignored), seeded by
    ``--seed``, ``--max_train_images`` of them at most."""
    fold = int(args.fold)
    train_split = make_fewshot_dataset(args.dataset, args.data_path, fold, "trn", shot=1, img_size=args.crop_size,
                                       normalisation=normalisation)
    return FoldTrainingSet(train_split, fold_class_ids(args.dataset, fold, "test"), seed=args.seed,
                           max_episodes=args.max_train_images)


def trained_fold_warning(args, record: Dict, fold: str) -> Optional[str]:
    """A warning when a checkpoint trained on a zero-shot fold is tested on another fold of the same benchmark (whose
    test classes it then saw in training), or None."""
    if record.get("dataset") == args.dataset and str(record.get("fold", fold)) != str(fold):
        return ("test.py: warning: %s was trained on %s fold %s; fold %s's test classes were among its training "
                "classes, so this is not a zero-shot figure" % (fold_weights(args, fold), args.dataset,
                                                                 record.get("fold"), fold))
    return None


def run_zero_shot(args, outdir: str) -> List[Tuple[float, float]]:
    """HSNet's zero-shot test of every selected fold (``--fold K`` or ``all``), each with its ``--weights``.

    Prints ``Fold K, 0-shot ==> mIoU xx.xx  FB-IoU xx.xx`` per fold (and the mean over folds for ``--fold all``) and
    appends them with the per-class foreground IoU to ``zero_shot_log.txt`` (or ``--log_file``).

    Returns:
        ``[(mIoU, FB-IoU)]`` in percent, one per fold.
    """
    names = benchmark_labels(args.dataset)
    check_benchmark_files(args)  # a wrong --data_path is said before any network is built
    if args.flip or list(args.scales) != [1.0]:
        print("test.py: note: --scales/--flip are not used by the zero-shot protocol (one scale, as the official "
              "test_lseg_zs.py)", file=sys.stderr)
    if args.crop_size != HSNET_IMAGE_SIZE:
        print("test.py: note: episodes at %d x %d px (--crop_size); the official protocol uses %d"
              % (args.crop_size, args.crop_size, HSNET_IMAGE_SIZE), file=sys.stderr)
    log_path = args.log_file or os.path.join(outdir, "zero_shot_log.txt")
    results = []
    for fold in selected_folds(args):
        fold_args = copy.copy(args)
        fold_args.weights = fold_weights(args, fold)
        net, _, _ = load_network(fold_args, sizes_from_checkpoint=False)
        net.set_train(False)
        warning = trained_fold_warning(args, getattr(fold_args, "recorded", {}), fold)
        if warning:
            print(warning, file=sys.stderr)
        episodes = make_episodes(args, fold, net.cfg.normalisation)
        started = time.time()
        meter = evaluate_episodes(net, episodes, names, batch_size=args.test_batch_size,
                                  max_episodes=args.max_images, progress=True, desc="%s fold %s" % (args.dataset, fold))
        miou, fb_iou = meter.compute()
        if meter.episodes < len(episodes):
            print("test.py: note: --max_images: %d of the fold's %d episodes, %d of its %d classes; the others count "
                  "as IoU 0 in the mIoU (HSNet averages over all the fold's classes)"
                  % (meter.episodes, len(episodes), len(meter.classes_seen), len(episodes.class_ids)), file=sys.stderr)
        line = "Fold %s, %d-shot ==> mIoU %5.2f  FB-IoU %5.2f" % (fold, args.nshot, miou, fb_iou)
        print(line, flush=True)
        per_class = ", ".join("%s %.2f" % (names[class_id], 100 * iou)
                              for class_id, iou in zip(meter.class_ids, meter.class_iou()[1]))
        append_text(log_path, "%s: %s, weights %s, %s fold %s, %d episodes at %d px (%.0f s)\n  foreground IoU: %s\n"
                    % (time.strftime("%Y-%m-%d %H:%M:%S"), line, fold_args.weights, args.dataset, fold,
                       meter.episodes, args.crop_size, time.time() - started, per_class))
        results.append((miou, fb_iou))
    if len(results) > 1:
        line = "Mean of folds %s, %d-shot ==> mIoU %5.2f  FB-IoU %5.2f" % (
            ",".join(selected_folds(args)), args.nshot, sum(r[0] for r in results) / len(results),
            sum(r[1] for r in results) / len(results))
        print(line, flush=True)
        append_text(log_path, line + "\n")
    print("log: %s" % log_path)
    return results
