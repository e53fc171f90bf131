"""The benchmark cases and the registry of their variants.

A *variant* is the unit that runs in one fresh process: ``forward/graph/cached`` is case ``forward`` in GRAPH_MODE
with the text features cached. Its function takes a :class:`CaseContext` and returns a dict holding at least
``timing`` (:func:`bench.timing.measure`), which becomes the record's ``result``.

Cases, one module each:
    forward     1. eval forward (ViT-L/16, 480x480, 150 ADE20K labels), text encoded in the call vs cached; the
                   zero-shot episode forward (ResNet-101); the forward by stage and one ViT block by operation;
                   the float32 matmul reference (``matmul``).
    training    2. the Trainer's training step, batch 1, text cached vs encoded in the step; its op profile.
    data        3. training-crop throughput of the training loader.
    evaluation  4. multi-scale + flip and single-scale evaluation of one image; a 12 MP photo as test.py reads it.
    text        5. tokenising and encoding the 150 ADE20K labels.
    export      6. MindIR export, load and run of the eval network (labels baked in, or text features as input).
    selftest    the harness self-test.
``registry`` lists every variant with its quick and full parameters; ``random_network`` builds what they time.

Imports: ``python -m bench`` imports this package for the registry, and its process lives for the whole run next to
the variants' children, so no module here imports MindSpore at the top: ``mindspore``, ``mindcv``, ``modules`` and
``encoding_custom.engine`` / ``.evaluator`` / ``.losses`` are imported inside the case functions (what importing them
in the parent costs: PERFORMANCE.md, "The benchmark's own process and the training step it times").
"""
from bench.cases.registry import RUN_ORDER, SELFTEST_VARIANTS, VARIANTS, get_variant, select_variants  # noqa: F401
from bench.cases.variant import CaseContext, Variant, make_workdir, remove_workdir  # noqa: F401
