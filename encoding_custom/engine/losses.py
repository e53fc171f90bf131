"""Per-pixel cross-entropy with an ignore label, as a MindSpore Cell (usable in ``nn.WithLossCell``, both modes)."""
import mindspore as ms
from mindspore import nn, ops


class SegmentationLoss(nn.Cell):
    """Mean cross-entropy over the pixels whose target is not ``ignore_index``.

    This is what lang-seg trains with (PyTorch-Encoding's ``SegmentationLosses`` without SE/aux terms, i.e.
    ``torch.nn.CrossEntropyLoss(ignore_index=-1)``). When every pixel is ignored the loss is 0 (torch gives NaN)
    so that one unlabelled crop cannot poison a run.

    Args:
        ignore_index: target value to skip (-1: ADE20K's unlabelled pixels after the -1 shift, and padding).

    Inputs:
        logits: float (B, C, H, W) unnormalised class scores.
        target: int (B, H, W) class indices in ``[0, C)`` or ``ignore_index``.

    Outputs:
        float32 scalar.
    """

    def __init__(self, ignore_index: int = -1):
        super().__init__()
        self.ignore_index = ignore_index
        # The primitive: in PyNative on MindSpore 2.10 the Tensor's broadcasting ``-`` (``SubExt``) takes 147 ms on
        # (1, 150, 480, 480) − (1, 1, 480, 480), ``Sub`` 43 ms.
        self.subtract = ops.Sub()

    def construct(self, logits, target):
        target = ops.cast(target, ms.int32)
        logits = ops.cast(logits, ms.float32)
        valid = ops.not_equal(target, self.ignore_index)
        # Ignored pixels look up class 0; their term is multiplied by 0 below.
        safe_target = ops.select(valid, target, ops.zeros_like(target))
        # log p_t = (x_t - m) - log sum_c exp(x_c - m), written out instead of LogSoftmax, whose CPU kernel over the
        # channel axis of NCHW is several times slower on both stacks (bench.workarounds loss; PERFORMANCE.md). The
        # max is a constant shift (the result does not depend on it), so no gradient flows through it.
        peak = ops.stop_gradient(logits.max(axis=1, keepdims=True))
        shifted = self.subtract(logits, peak)
        log_normaliser = ops.log(ops.sum(ops.exp(shifted), dim=1, keepdim=True))
        picked = ops.gather_elements(shifted, 1, ops.expand_dims(safe_target, 1)) - log_normaliser
        picked = ops.squeeze(picked, 1)
        weights = ops.cast(valid, ms.float32)
        total = -ops.reduce_sum(picked * weights)
        count = ops.maximum(ops.reduce_sum(weights), ops.ones((), ms.float32))
        return total / count
