"""The bottom layer, which imports nothing else of the project: what the installed MindSpore can do
(:mod:`foundation.platform`), atomic file writes (:mod:`foundation.atomic`), label lists (:mod:`foundation.labels`), the
input normalisations of the backbones (:mod:`foundation.images`) and the checkpoint file format of our own
(:mod:`foundation.checkpoint_file`).

Layers, each importing only those before it: ``foundation`` -> ``clip_ms`` -> ``modules`` -> ``encoding_custom`` ->
the scripts (``tests/test_layers.py`` checks every import).
"""
