"""Training engine: poly LR schedule, atomic checkpoints, the training loop, curves.

Takes an already built network (it never imports ``modules``). Public API:

- :class:`PolyLR`, :func:`poly_lr` — the official poly decay as a MindSpore ``LearningRateSchedule``.
- :class:`CheckpointManager` — a run's epoch, last and best checkpoints (file format: ``foundation.checkpoint_file``).
- :class:`Trainer`, :class:`TrainConfig`, :class:`NonFiniteLossError`,
  :func:`evaluate`, :func:`network_predictor` (the validation used in training and by test.py).
- :func:`build_optimizer`, :class:`GroupedMomentum` — SGD with momentum, one poly lr per parameter group.
- :class:`AccumulatingTrainStep` — the training step (accumulation × dynamic loss scale × clipping, any device);
  :class:`EpochEndHook`, :func:`default_epoch_end_hooks` (``Trainer.epoch_end_hooks``), ``train_log`` (logger
  ``lseg.train``).
- :func:`refresh_parameters` — works around stale graph-mode parameter read-back of msadapter modules (legacy stack).
- :func:`get_rank`, :func:`get_world_size`, :func:`is_main_process`, :func:`epoch_indices`.
- :func:`plot_curves`.
- :func:`configure_runtime`, :func:`select_device`, :class:`DeviceUnavailableError`, :func:`prepare_cpu_process`
  (:func:`run_ops_synchronously`, :func:`bind_kernel_threads`) — device, mode, data-parallel group, CPU threads and
  seeds of a process.
- :class:`ExperimentLock`, :class:`ExperimentBusyError`, :func:`remove_stale_temp_files` — one run per experiment
  folder; :class:`StopSignals`, :class:`TrainingInterrupted` — SIGINT/SIGTERM end a run between steps.
"""
from encoding_custom.engine.callbacks import EpochEndHook, default_epoch_end_hooks, train_log  # noqa: F401
from encoding_custom.engine.checkpoint import CheckpointManager  # noqa: F401
from encoding_custom.engine.data import BatchLoader, epoch_indices  # noqa: F401
from encoding_custom.engine.distributed import get_rank, get_world_size, is_main_process  # noqa: F401
from encoding_custom.engine.experiment import ExperimentBusyError, ExperimentLock, remove_stale_temp_files  # noqa: F401
from encoding_custom.engine.lr import PolyLR, poly_lr  # noqa: F401
from encoding_custom.engine.optimizer import GroupedMomentum, build_optimizer  # noqa: F401
from encoding_custom.engine.params import refresh_parameters  # noqa: F401
from encoding_custom.engine.plotting import plot_curves  # noqa: F401
from encoding_custom.engine.runtime import (  # noqa: F401
    DeviceUnavailableError,
    bind_kernel_threads,
    configure_runtime,
    prepare_cpu_process,
    run_ops_synchronously,
    select_device,
)
from encoding_custom.engine.train_step import AccumulatingTrainStep  # noqa: F401
from encoding_custom.engine.trainer import (  # noqa: F401
    NonFiniteLossError,
    StopSignals,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    earlier_run_files,
    evaluate,
    network_predictor,
    refuse_earlier_run,
)
