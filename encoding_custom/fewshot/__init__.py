"""Zero-/few-shot segmentation benchmarks with HSNet's protocol: PASCAL-5i (COCO-20i, FSS-1000 split lists).

numpy/PIL only (no MindSpore, no torch), so data loading and the metric run anywhere:

- :mod:`.splits`: the packaged HSNet split files (``encoding_custom/data/fewshot_splits``) and their readers;
- :mod:`.metric`: ``FewShotMeter`` (HSNet's per-fold mIoU and FB-IoU);
- :mod:`.episodes`: the episode record and HSNet's 480 resize / normalisations;
- :mod:`.pascal`: PASCAL-5i episodes (official sampling, boundary ignore) and a synthetic set in its layout.
"""
from .episodes import NORMALISATIONS, FewShotEpisode
from .metric import FewShotMeter, episode_areas
from .pascal import PascalFewShot, episode_names, extract_ignore_idx, pascal_class_ids, write_synthetic_pascal5i
from .splits import (
    BENCHMARK_CLASSES,
    PACKAGED_SPLITS_DIR,
    FewShotDataError,
    read_coco_classwise,
    read_fss_categories,
    read_pascal_metadata,
)

__all__ = ["BENCHMARK_CLASSES", "NORMALISATIONS", "PACKAGED_SPLITS_DIR", "FewShotDataError", "FewShotEpisode",
           "FewShotMeter", "PascalFewShot", "episode_areas", "episode_names", "extract_ignore_idx",
           "pascal_class_ids", "read_coco_classwise", "read_fss_categories", "read_pascal_metadata",
           "write_synthetic_pascal5i"]
