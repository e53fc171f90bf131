"""Train LSeg on ADE20K (or the synthetic ADE20K-layout set), or a zero-shot fold, with MindSpore.

    python train_custom.py --preset tiny                      # CPU quick start on datasets/synthetic_ade20k
    python train_custom.py --preset vitl16_ade20k --device_target Ascend --data_path ../datasets
    python train_custom.py --preset zs_rn101_pascal --fold 0 --device_target Ascend   # PASCAL-5i fold 0

A zero-shot fold (``--dataset pascal|coco|fss --fold K``) trains on the fold's training classes only, each image
against the label pair ``['others', class]`` (``encoding_custom.fewshot.training``); its test classes are never a
label and their pixels are ignored; every epoch is validated on the fold's unseen classes by HSNet's protocol
(mIoU / FB-IoU of ``encoding_custom.evaluation.zero_shot.evaluate_episodes``, stored as fractions in metrics.jsonl).

Writes to ``checkpoints/<exp_name>/``: ``epoch_XXX.ckpt`` (last K), ``last.ckpt``, ``best.ckpt``, ``metrics.jsonl``
(one line per epoch), ``steps.jsonl`` (one line per optimizer step), ``curves.png``, ``data_check.json`` (the data
check's cache) and ``.lock``. ``--resume`` continues
exactly where the last completed epoch ended. The folder is locked for the run's life (a second run on it stops at
once, naming the first). SIGINT/SIGTERM stop after the running step and print the ``--resume`` command.
Exit status: 0 done, 2 bad option or input, 3 non-finite loss, 130 SIGINT, 143 SIGTERM.

What differs between data set kinds (labels, data sets, loss, validation) is the task's
(``encoding_custom.tasks``); the network comes from ``encoding_custom.tasks.networks``.
"""
import contextlib
import errno
import os
import shlex
import shutil
import sys
from typing import List, Optional, Sequence

from encoding_custom.datasets.check import DataError
from encoding_custom.engine import (
    ExperimentBusyError,
    ExperimentLock,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    get_world_size,
    is_main_process,
    refuse_earlier_run,
    remove_stale_temp_files,
)
from encoding_custom.engine.distributed import broadcast_from_rank0
from encoding_custom.engine.lr import poly_lr
from encoding_custom.tasks import OptionError, configure_context, create_task
from encoding_custom.tasks.networks import (
    RESUMED_RUN_OPTIONS,
    recorded_option_conflicts,
    training_network,
)
from foundation.checkpoint_file import (
    RECORDED_CLASS_INDICES_KEY,
    RECORDED_LABELS_KEY,
    CheckpointError,
    check_resumable,
    read_checkpoint,
)
from modules import tnn
from modules.weights import WeightsError
from options import effective_lr, experiment_dir, options_record, parse_options, resolve_resume_path


def resume_command(argv: Sequence[str]) -> str:
    """The command that continues this run from its experiment's ``last.ckpt``.

    It is the command that started the run (``$LSEG_COMMAND`` when a wrapper such as train_custom.sh set it, else
    this interpreter + script + ``argv``) without ``--overwrite`` and any ``--resume [PATH]``, plus ``--resume``.

    Args:
        argv: this process's arguments.

    Returns:
        a shell-quoted command line.
    """
    wrapper = os.environ.get("LSEG_COMMAND")
    words = shlex.split(wrapper) if wrapper else [sys.executable, sys.argv[0] or "train_custom.py", *argv]
    kept: List[str] = []
    skip_value = False
    for word in words:
        if skip_value and not word.startswith("-"):
            skip_value = False
            continue
        skip_value = word == "--resume"
        if word not in ("--overwrite", "--resume") and not word.startswith("--resume="):
            kept.append(word)
    return " ".join(shlex.quote(word) for word in kept + ["--resume"])


def report_interrupt(err, argv: Sequence[str]) -> int:
    """Print where an interrupted run stands and how to continue it.

    Args:
        err: the ``TrainingInterrupted`` raised by ``Trainer.fit``; argv: this process's arguments.

    Returns:
        the exit status, 128 + the signal (130 SIGINT, 143 SIGTERM).
    """
    print("train_custom.py: %s; nothing after the last checkpoint is kept" % err, file=sys.stderr)
    if err.last_checkpoint:
        print("  last good checkpoint: %s (epoch %d)\n  continue exactly with: %s"
              % (err.last_checkpoint, err.last_epoch, resume_command(argv)), file=sys.stderr)
    else:
        print("  no epoch had finished, so there is no checkpoint: start again with the same command",
              file=sys.stderr)
    return 128 + err.signum


def report_full_disk(err: OSError, exp_dir: str, checkpoint_bytes: int, last_checkpoint: Optional[str],
                     argv: Sequence[str]) -> int:
    """Print, in one line and a resume hint, that the disk of the experiment folder is full.

    Args:
        err: the ENOSPC error; exp_dir: the experiment folder; checkpoint_bytes: the size of one checkpoint (the
        parameters and optimizer state); last_checkpoint: ``last.ckpt`` if a checkpoint was written, else None;
        argv: this process's arguments.

    Returns:
        the exit status, 1 (a failure while running).
    """
    free_mb = shutil.disk_usage(exp_dir).free / 2 ** 20 if os.path.isdir(exp_dir) else 0.0
    print("train_custom.py: error: no space left in %s while writing %s: a checkpoint needs %.1f MB, %.1f MB are "
          "free; no partial file was kept" % (exp_dir, os.path.basename(err.filename or "a checkpoint or log"),
                                              checkpoint_bytes / 2 ** 20, free_mb), file=sys.stderr)
    if last_checkpoint:
        print("  last good checkpoint: %s\n  free some space, then continue exactly with: %s"
              % (last_checkpoint, resume_command(argv)), file=sys.stderr)
    else:
        print("  no epoch had finished, so there is no checkpoint: free some space and start again",
              file=sys.stderr)
    return 1


def resume_conflict(args, path: str, stored_options: dict) -> Optional[str]:
    """What makes this run not the continuation of the run that wrote ``path``, or None.

    Args:
        args: this run's options; path: the ``--resume`` checkpoint; stored_options: its options record.

    Returns:
        e.g. ``"W.ckpt was trained with --fold 0; this run builds --fold 1: pass the checkpoint's values"``.
    """
    conflicts = recorded_option_conflicts(args, stored_options, RESUMED_RUN_OPTIONS)
    if not conflicts:
        return None

    def named(key: str) -> str:
        return "--prompt/--prompts" if key == "prompt_templates" else "--" + key  # options that give the templates

    return ("%s was trained with %s; this run builds %s: pass the checkpoint's values"
            % (path, ", ".join("%s %s" % (named(k), v) for k, _, v in conflicts),
               ", ".join("%s %s" % (named(k), v) for k, v, _ in conflicts)))


def schedule_note(stored_options: dict, trainer) -> Optional[str]:
    """A note when a resumed run's ``--max_epochs`` differs from the checkpoint's: the poly schedule changes.

    Args:
        stored_options: the checkpoint's options record; trainer: the resumed ``Trainer``.

    Returns:
        the note (with the next lr under both schedules), or None when the lengths agree.
    """
    planned = stored_options.get("max_epochs")
    if planned is None or planned == trainer.config.max_epochs:
        return None
    base = trainer.schedules[0].base_lr
    before = poly_lr(base, trainer.global_step, trainer.steps_per_epoch, int(planned))
    return ("note: the checkpoint's run planned %d epochs, this one %d: the poly lr schedule is recomputed for %d "
            "epochs, so the next lr is %.4g instead of %.4g" % (planned, trainer.config.max_epochs,
                                                                 trainer.config.max_epochs, trainer.current_lrs()[0],
                                                                 before))


# ---------------------------------------------------------------------------------------------------------- main
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse options, build everything, train. Returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_options(argv, purpose="train", for_training=True)
    try:
        resume_path = resolve_resume_path(args)
        configure_context(args)
    except OptionError as err:
        print("train_custom.py: error: %s" % err, file=sys.stderr)
        return 2
    exp_dir = experiment_dir(args)
    main_process = is_main_process()
    try:
        # Only the writing process (rank 0) owns the folder; it is taken before anything is built or read.
        with ExperimentLock(exp_dir) if main_process else contextlib.nullcontext() as lock:
            if main_process:
                for line in ([lock.takeover_message()] +
                             ["removed %s, left by a checkpoint write that did not finish" % path
                              for path in remove_stale_temp_files(exp_dir)]):
                    if line:
                        print("train_custom.py: %s" % line, file=sys.stderr, flush=True)
            return train(args, argv, resume_path, exp_dir)
    except ExperimentBusyError as err:
        print("train_custom.py: error: %s" % err, file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before training started (during the build or the data check)
        print("\ntrain_custom.py: interrupted before the first training step; nothing to resume", file=sys.stderr)
        return 130


def train(args, argv: Sequence[str], resume_path: Optional[str], exp_dir: str) -> int:
    """Build the network, data and trainer from the options and run them.

    Args:
        args: validated options; argv: the command line (for the resume hint); resume_path: ``--resume``'s
            checkpoint or None; exp_dir: the experiment folder, already locked by this process.

    Returns:
        the exit status (see the module docstring).
    """
    task = create_task(args)
    try:
        # Cheap checks first: none of them should wait for a ViT-L build or a minute of data checking.
        if resume_path is not None:
            check_resumable(resume_path)
        elif not args.overwrite:
            refuse_earlier_run(exp_dir)
        labels, class_indices = task.training_labels()
        net = training_network(args, labels, resuming=resume_path is not None)
        net.sync_text_features()  # the compiled training step reads the label features as a weight
    except CheckpointError as err:
        print("train_custom.py: error: --resume: %s" % err, file=sys.stderr)
        return 2
    except (OptionError, WeightsError, FileExistsError, DataError) as err:
        print("train_custom.py: error: %s" % err, file=sys.stderr)
        return 2
    world_size = get_world_size()
    main_process = is_main_process()
    try:
        train_set, val_set = task.training_sets(exp_dir, world_size, main_process)
    except (DataError, FileNotFoundError) as err:
        print("train_custom.py: error: %s" % err, file=sys.stderr)
        return 2
    loss, trainer_options, max_train_images = task.trainer_parts(net, labels, val_set)
    lr = effective_lr(args.base_lr, args.batch_size, world_size)
    config = TrainConfig(lr=lr, max_epochs=args.max_epochs, batch_size=args.batch_size, momentum=args.momentum,
                         weight_decay=args.weight_decay, accumulate_grad_batches=args.accumulate_grad_batches,
                         amp_level=args.amp_level, amp_dtype=args.amp_dtype, recompute=args.recompute,
                         exp_dir=exp_dir,
                         keep_last=args.keep_last, seed=args.seed,
                         workers=args.workers, stop_after_epoch=args.stop_after_epoch,
                         max_train_images=max_train_images, max_val_images=args.max_val_images,
                         val_batch_size=args.batch_size,
                         options=dict(options_record(args), **{RECORDED_LABELS_KEY: labels,
                                                               RECORDED_CLASS_INDICES_KEY: class_indices}),
                         overwrite=args.overwrite)
    try:
        trainer = Trainer(net, loss, train_set, config,
                          param_groups=[(net.backbone_params(), 1.0), (net.head_params(), 10.0)],
                          val_set=val_set, **trainer_options)
    except ValueError as err:  # e.g. fewer images than one step needs; the Trainer names the numbers
        print("train_custom.py: error: %s" % err, file=sys.stderr)
        return 2
    if main_process:
        print("training %s (%s) on %s: %d train / %d val %s, %d %s device(s), lr %.3g (head %.3g), "
              "%d optimizer steps per epoch, %s mode (%s) -> %s"
              % (args.backbone, task.summary(labels, val_set), args.data_path, trainer.loader.n_items, len(val_set),
                 task.unit, world_size, args.device_target, lr, lr * 10, trainer.steps_per_epoch, args.mode,
                 tnn.describe(), exp_dir),
              flush=True)
    if resume_path is not None:
        try:
            meta = trainer.resume(resume_path)
        except CheckpointError as err:
            # A run of other options (another fold, say) fails the step-count check first: name the cause.
            try:
                stored = read_checkpoint(resume_path)[2].get("options", {})
            except CheckpointError:
                stored = {}
            print("train_custom.py: error: --resume: %s" % (resume_conflict(args, resume_path, stored) or err),
                  file=sys.stderr)
            return 2
        # Options without parameters of their own (block depth, activation, arch 1 vs 2, the label order) are not
        # caught by the strict load: a resumed run must build the network the checkpoint was trained as.
        conflict = resume_conflict(args, resume_path, meta.get("options", {}))
        if conflict:
            print("train_custom.py: error: --resume: %s" % conflict, file=sys.stderr)
            return 2
        if main_process:
            print("resumed from %s after epoch %d (optimizer step %d)" % (resume_path, meta["epoch"],
                                                                       trainer.global_step), flush=True)
            note = schedule_note(meta.get("options", {}), trainer)
            if note:
                print(note, flush=True)
    if world_size > 1:
        # Every rank seeds alike and reads the same files, but data parallelism is only correct from identical
        # weights: make it certain, as DDP does at construction.
        broadcast_from_rank0(net)
    try:
        history = trainer.fit()
    except NonFiniteLossError as err:
        print("train_custom.py: %s" % err, file=sys.stderr)
        return 3
    except TrainingInterrupted as err:
        return report_interrupt(err, argv) if main_process else 128 + err.signum
    except DataError as err:  # a file that went bad after the check
        print("train_custom.py: error: %s" % err, file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        if not main_process:
            return 1
        last = trainer.checkpoints.last_path
        state = {id(p): p for p in list(net.get_parameters()) + list(trainer.optimizer.get_parameters())}
        size = sum(int(p.size) * p.data.itemsize for p in state.values())
        return report_full_disk(err, exp_dir, size, last if os.path.isfile(last) else None, argv)
    if main_process and history:
        last = history[-1]
        first = "%s %.4f" % (task.headline_metric, last.get(task.headline_metric, float("nan")))
        print("done: epoch %d, %s, mIoU %.4f (best %.4f). Checkpoints, metrics.jsonl and curves.png in %s"
              % (last["epoch"], first, last.get("mIoU", float("nan")), last.get("best_mIoU", float("nan")), exp_dir),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
