"""ADE20K on disk and in memory: the data set (:mod:`.ade20k`) with its transforms, the layout and the data check
before training (:mod:`.layout`, :mod:`.check`), resumable checksummed downloads, the synthetic set of the quick
start, and ``--classes`` (:mod:`.classes`). The zero-shot benchmarks are :mod:`encoding_custom.fewshot`.

Submodules are imported by their users; this file imports nothing, so checking a folder does not load MindSpore.
"""
