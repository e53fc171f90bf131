"""Zero-/few-shot segmentation benchmarks with HSNet's protocol: PASCAL-5i, COCO-20i, FSS-1000.

numpy/PIL only (no MindSpore, no torch), so data loading and the metric run anywhere:

- :mod:`.splits`: the benchmarks and their folds (the one fold rule), the packaged HSNet split files
  (``encoding_custom/data/fewshot_splits``) and their readers;
- :mod:`.metric`: ``FewShotMeter`` (HSNet's per-fold mIoU and FB-IoU);
- :mod:`.episodes`: the episode record, HSNet's 480 resize / normalisations, the ``FewShotDataset`` base
  (``pairs``, ``class_ids``, ``training_target``, episodes);
- :mod:`.pascal`, :mod:`.coco`, :mod:`.fss`: each benchmark's episodes (official sampling) and a synthetic set in
  its layout;
- :mod:`.benchmarks`: the registry (labels, class ids, ``make_fewshot_dataset``, ``write_synthetic``).
"""
from encoding_custom.fewshot.benchmarks import benchmark_labels, fold_class_ids, make_fewshot_dataset, write_synthetic
from encoding_custom.fewshot.coco import CocoFewShot, coco_class_ids, write_synthetic_coco20i
from encoding_custom.fewshot.episodes import NORMALISATIONS, FewShotDataset, FewShotEpisode, episode_names
from encoding_custom.fewshot.fss import FssFewShot, fss_class_ids, write_synthetic_fss1000
from encoding_custom.fewshot.metric import FewShotMeter, episode_areas
from encoding_custom.fewshot.pascal import PascalFewShot, extract_ignore_idx, pascal_class_ids, write_synthetic_pascal5i
from encoding_custom.fewshot.splits import (
    BENCHMARK_CLASSES,
    BENCHMARKS,
    FOLDS_PER_BENCHMARK,
    PACKAGED_SPLITS_DIR,
    SYNTHETIC_SPLITS_FOLDER,
    FewShotDataError,
    benchmark_folds,
    check_benchmark,
    check_benchmark_fold,
    read_coco_classwise,
    read_fss_categories,
    read_pascal_metadata,
    resolve_splits_dir,
)

__all__ = ["BENCHMARKS", "BENCHMARK_CLASSES", "FOLDS_PER_BENCHMARK", "NORMALISATIONS", "PACKAGED_SPLITS_DIR",
           "SYNTHETIC_SPLITS_FOLDER", "CocoFewShot", "FewShotDataError", "FewShotDataset", "FewShotEpisode",
           "FewShotMeter", "FssFewShot", "PascalFewShot", "benchmark_folds", "benchmark_labels", "check_benchmark",
           "check_benchmark_fold", "coco_class_ids", "episode_areas", "episode_names", "extract_ignore_idx",
           "fold_class_ids", "fss_class_ids", "make_fewshot_dataset", "pascal_class_ids", "read_coco_classwise",
           "read_fss_categories", "read_pascal_metadata", "resolve_splits_dir", "write_synthetic",
           "write_synthetic_coco20i", "write_synthetic_fss1000", "write_synthetic_pascal5i"]
