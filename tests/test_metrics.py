"""encoding_custom.evaluation.metrics against PyTorch-Encoding's definitions and hand-computed cases."""
import numpy as np
import pytest

from encoding_custom.evaluation.metrics import SegmentationMetric


def official_batch_pix_accuracy(output, target):
    """numpy transcription of PyTorch-Encoding encoding/utils/metrics.py batch_pix_accuracy."""
    predict = np.argmax(output, 1).astype("int64") + 1
    target = target.astype("int64") + 1
    pixel_labeled = np.sum(target > 0)
    pixel_correct = np.sum((predict == target) * (target > 0))
    return pixel_correct, pixel_labeled


def official_batch_intersection_union(output, target, nclass):
    """numpy transcription of PyTorch-Encoding encoding/utils/metrics.py batch_intersection_union."""
    predict = np.argmax(output, 1).astype("int64") + 1
    target = target.astype("int64") + 1
    predict = predict * (target > 0).astype(predict.dtype)
    intersection = predict * (predict == target)
    area_inter, _ = np.histogram(intersection, bins=nclass, range=(1, nclass))
    area_pred, _ = np.histogram(predict, bins=nclass, range=(1, nclass))
    area_lab, _ = np.histogram(target, bins=nclass, range=(1, nclass))
    return area_inter, area_pred + area_lab - area_inter


def official_get(total_correct, total_label, total_inter, total_union):
    """PyTorch-Encoding SegmentationMetric.get."""
    pix_acc = 1.0 * total_correct / (np.spacing(1) + total_label)
    iou = 1.0 * total_inter / (np.spacing(1) + total_union)
    return pix_acc, iou.mean()


@pytest.mark.parametrize("nclass", [2, 7, 150])
def test_matches_pytorch_encoding_on_random_predictions(nclass):
    rng = np.random.default_rng(nclass)
    metric = SegmentationMetric(nclass)
    totals = [0, 0, 0, 0]
    for _ in range(4):
        logits = rng.normal(size=(2, nclass, 9, 11)).astype(np.float32)
        target = rng.integers(-1, nclass, size=(2, 9, 11))
        # Make predictions partly right so intersections are not all tiny.
        agree = rng.random(target.shape) < 0.4
        logits[:, :, :, :] += 10 * (np.eye(nclass)[np.maximum(target, 0)].transpose(0, 3, 1, 2) * agree[:, None])
        metric.update(logits, target)
        correct, labelled = official_batch_pix_accuracy(logits, target)
        inter, union = official_batch_intersection_union(logits, target, nclass)
        totals = [totals[0] + correct, totals[1] + labelled, totals[2] + inter, totals[3] + union]
    np.testing.assert_array_equal(metric.total_inter, totals[2])
    np.testing.assert_array_equal(metric.total_union, totals[3])
    assert (metric.total_correct, metric.total_label) == (totals[0], totals[1])
    pix_acc, miou = metric.get()
    ref_acc, ref_miou = official_get(*totals)
    assert pix_acc == pytest.approx(ref_acc, abs=1e-12) and miou == pytest.approx(ref_miou, abs=1e-12)


def test_labels_and_logits_give_the_same_update():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(3, 4, 6, 6))
    target = rng.integers(-1, 4, size=(3, 6, 6))
    from_logits, from_labels = SegmentationMetric(4), SegmentationMetric(4)
    from_logits.update(logits, target)
    from_labels.update(logits.argmax(1), target)
    assert from_logits.get() == from_labels.get()


def test_hand_computed_case():
    # classes 0..2; -1 ignored
    target = np.array([[0, 0, 1, 1],
                       [2, 2, -1, -1]])
    pred = np.array([[0, 1, 1, 1],
                     [2, 0, 2, 0]])
    metric = SegmentationMetric(3)
    metric.update(pred[None], target[None])
    # labelled 6, correct: (0,0) (0,2) (0,3) (1,0) = 4
    assert metric.get_all()[:2] == (4, 6)
    # class 0: pred {(0,0),(1,1)} target {(0,0),(0,1)} -> inter 1, union 3
    # class 1: pred {(0,1),(0,2),(0,3)} target {(0,2),(0,3)} -> inter 2, union 3
    # class 2: pred {(1,0)} target {(1,0),(1,1)} -> inter 1, union 2 (ignored pixels' predictions do not count)
    np.testing.assert_array_equal(metric.total_inter, [1, 2, 1])
    np.testing.assert_array_equal(metric.total_union, [3, 3, 2])
    pix_acc, miou = metric.get()
    assert pix_acc == pytest.approx(4 / 6)
    assert miou == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)


def test_miou_over_all_classes_versus_present_classes():
    metric = SegmentationMetric(4)  # classes 2 and 3 never occur
    metric.update(np.array([[0, 1]]), np.array([[0, 1]]))
    pix_acc, miou = metric.get()
    assert pix_acc == pytest.approx(1.0)
    assert miou == pytest.approx(0.5)          # PyTorch-Encoding: absent classes count as IoU 0
    assert metric.miou_present() == pytest.approx(1.0)
    assert "mIoU (all 4 classes) 0.5000" in metric.table(["a", "b", "c", "d"])


def test_accumulates_over_batches_resets_and_accepts_lists():
    metric = SegmentationMetric(2)
    metric.update([np.array([0, 1, 1]), np.array([[1]])], [np.array([0, 1, 0]), np.array([[1]])])
    assert metric.get_all()[:2] == (3, 4)
    metric.update(np.array([0]), np.array([-1]))
    assert metric.get_all()[:2] == (3, 4)
    metric.reset()
    assert metric.get_all()[:2] == (0, 0) and metric.total_union.sum() == 0
    with pytest.raises(ValueError, match="shape"):
        metric.update(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="update\\(pred, target\\)"):
        metric.update(np.array([[-1, 0]]), np.array([[1, 1]]))  # swapped arguments


def test_accepts_mindspore_tensors():
    import mindspore as ms
    metric = SegmentationMetric(3)
    metric.update(ms.Tensor(np.array([[0, 2, 2]], np.int32)), ms.Tensor(np.array([[0, 2, 1]], np.int32)))
    np.testing.assert_array_equal(metric.total_inter, [1, 0, 1])
