"""How good a network is: pixAcc/mIoU (:mod:`.metrics`), the official multi-scale sliding-window evaluation and any
image at any size (:mod:`.evaluator`), and the zero-shot episode loop by HSNet's protocol (:mod:`.zero_shot`)."""
