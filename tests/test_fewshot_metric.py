"""FewShotMeter against HSNet's own Evaluator + AverageMeter (fixture made with torch), and its edge cases."""
import os

import numpy as np
import pytest

from encoding_custom.fewshot.metric import FewShotMeter, episode_areas, histc_two_bins

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "fewshot", "metric_reference.npz")


def _cases():
    with np.load(FIXTURE) as data:
        return [str(name) for name in data["cases"]]


@pytest.mark.parametrize("case", _cases())
def test_meter_equals_official_after_every_batch(case):
    with np.load(FIXTURE) as data:
        meter = FewShotMeter(str(data[f"{case}/benchmark"]), data[f"{case}/class_ids"].tolist())
        for index in range(int(data[f"{case}/batches"])):
            prefix = f"{case}/batch{index}/"
            ignore = data[prefix + "ignore"] if prefix + "ignore" in data else None
            inter, union = meter.update(data[prefix + "pred"], data[prefix + "gt"], data[prefix + "class_ids"],
                                        ignore=ignore)
            np.testing.assert_array_equal(inter, data[prefix + "area_inter"])
            np.testing.assert_array_equal(union, data[prefix + "area_union"])
            miou, fb_iou = meter.compute()
            np.testing.assert_allclose([miou, fb_iou], [data[prefix + "miou"], data[prefix + "fb_iou"]],
                                       rtol=1e-5, atol=1e-5, equal_nan=True)


def test_histc_semantics():
    values = np.array([[0, 0.49, 0.5, 1, 1.0001, -0.01, 255, np.nan]])
    np.testing.assert_array_equal(histc_two_bins(values), [[2, 2]])


def test_boundary_pixels_count_nowhere():
    gt = np.array([[[0, 1, 1, 0]]])
    ignore = np.array([[[1, 0, 0, 0]]])
    pred = np.array([[[1, 1, 0, 0]]])  # the boundary pixel predicted foreground is not a false positive
    inter, union = episode_areas(pred, gt, ignore)
    np.testing.assert_array_equal(inter, [[1], [1]])
    np.testing.assert_array_equal(union, [[2], [2]])
    inter, union = episode_areas(pred, gt)
    np.testing.assert_array_equal(union, [[3], [3]])


def test_miou_averages_over_the_fold_classes_with_unseen_ones_counting_zero():
    meter = FewShotMeter("pascal", [0, 1, 2, 3, 4])
    gt = np.zeros((2, 4, 4))
    gt[:, :2] = 1
    meter.update(gt, gt, [0, 0])  # class 0 perfect, classes 1-4 never seen
    miou, fb_iou = meter.compute()
    assert miou == pytest.approx(20.0) and fb_iou == pytest.approx(100.0)
    assert meter.episodes == 2
    meter.update(gt, gt, [7, 7])  # a class outside the fold: accumulated, not reported
    assert meter.compute() == (miou, fb_iou)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="benchmark: expected one of"):
        FewShotMeter("voc", [0])
    with pytest.raises(ValueError, match="class_ids: class ids must be in 0..19"):
        FewShotMeter("pascal", [20])
    meter = FewShotMeter("fss", range(760, 1000))
    masks = np.zeros((2, 3, 3))
    with pytest.raises(ValueError, match="class_ids: expected 2 ids"):
        meter.update(masks, masks, [800])
    with pytest.raises(ValueError, match="pred/gt: expected two"):
        meter.update(masks[0], masks[0], [800])
    with pytest.raises(ValueError, match="ignore: boundary pixels overlap"):
        meter.update(masks, masks + 1, [800, 801], ignore=np.ones_like(masks))
    assert meter.episodes == 0
