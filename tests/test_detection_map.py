"""COCO-style mAP of `nvcodec.bench.detection` on hand-made boxes (numpy only, no model)."""

import numpy as np
import pytest

from nvcodec.bench.detection import IOU_50_95, average_precision, box_iou, detection_map, map_report
from nvcodec.models.agreement import detection_map as agreement_map


def _d(label, score, box):
    return {"label": label, "score": score, "box": list(box)}


A, B = (0, 0, 10, 10), (20, 20, 30, 30)


def test_box_iou_by_hand():
    iou = box_iou(np.array([A, (0, 0, 10, 6)]), np.array([A, B, (5, 0, 15, 10)]))
    assert iou == pytest.approx(np.array([[1.0, 0.0, 50 / 150], [0.6, 0.0, 30 / 130]]))
    assert box_iou(np.zeros((0, 4)), np.array([A])).shape == (0, 1)
    assert box_iou(np.array([(3, 3, 3, 9)]), np.array([(3, 3, 3, 9)]))[0, 0] == 0.0  # degenerate box


def test_identical_boxes_score_one():
    refs = [[_d("dog", 0.9, A), _d("cat", 0.5, B)], [], [_d("dog", 0.4, B)]]
    r = map_report(refs, refs, None)
    assert r["map50"] == 1.0 and r["map50_95"] == 1.0 and r["reference_boxes"] == 3


def test_false_positive_between_hits_by_hand():
    # tp = [1, 0, 1] over 2 references: recall .5 .5 1, precision 1 .5 2/3 -> envelope 1, 2/3, 2/3.
    # Recall points 0..0.50 (51 of them) read 1, points 0.51..1 (50) read 2/3.
    refs = [[_d("dog", 0.9, A), _d("dog", 0.9, B)]]
    preds = [[_d("dog", 0.9, A), _d("dog", 0.8, (50, 50, 60, 60)), _d("dog", 0.7, B)]]
    expected = (51 * 1.0 + 50 * 2 / 3) / 101
    assert detection_map(preds, refs)["map"] == pytest.approx(expected)
    assert average_precision(np.array([1, 0, 1]), 2) == pytest.approx(expected)
    assert average_precision(np.array([0, 1]), 1) == pytest.approx(0.5)  # precision 1/2 at every recall point
    assert average_precision(np.array([1]), 4) == pytest.approx(26 / 101)  # recall 0.25: points 0..0.25
    assert average_precision(np.zeros(0), 3) == 0.0


def test_iou_threshold_sweep():
    # IoU exactly 0.6: a hit at 0.50, 0.55, 0.60, a miss at 0.65 ... 0.95 -> AP@0.5:0.95 = 3/10.
    refs = [[_d("car", 0.9, A)]]
    preds = [[_d("car", 0.8, (0, 0, 10, 6))]]
    r = map_report(preds, refs, None)
    assert r["map50"] == 1.0 and r["map50_95"] == pytest.approx(0.3)
    assert len(IOU_50_95) == 10 and IOU_50_95[0] == 0.5 and IOU_50_95[-1] == 0.95


def test_duplicates_and_greedy_matching():
    refs = [[_d("dog", 0.9, A)]]
    # The lower-scored duplicate is a false positive after the hit: precision 1 up to recall 1.
    assert detection_map([[_d("dog", 0.9, A), _d("dog", 0.5, A)]], refs)["map"] == 1.0
    # A higher-scored duplicate first takes the reference; the exact box ranked second is a false positive.
    near = (0, 0, 10, 8)  # IoU 0.8
    assert detection_map([[_d("dog", 0.9, near), _d("dog", 0.5, A)]], refs)["map"] == 1.0
    assert detection_map([[_d("dog", 0.9, near), _d("dog", 0.5, A)]], refs, (0.85,))["map"] == pytest.approx(0.5)
    # Each prediction takes the unmatched reference it overlaps most.
    refs2 = [[_d("dog", 0.9, A), _d("dog", 0.9, (0, 0, 10, 7))]]
    preds2 = [[_d("dog", 0.9, (0, 0, 10, 7)), _d("dog", 0.8, A)]]
    assert detection_map(preds2, refs2, (0.95,))["map"] == 1.0


def test_classes_frames_and_reference_threshold():
    refs = [[_d("cat", 0.9, A), _d("dog", 0.9, B)], [_d("dog", 0.2, A)]]
    preds = [[_d("cat", 0.7, A), _d("person", 0.9, B)], [_d("dog", 0.9, A)]]
    # dog: the only reference box >= 0.35 is in frame 0 and nobody predicted it -> AP 0; cat: 1.
    r = detection_map(preds, refs, ref_min_score=0.35)
    assert r["per_class"] == {"cat": 1.0, "dog": pytest.approx(0.0)} and r["map"] == pytest.approx(0.5)
    assert r["reference_boxes"] == 2 and r["boxes"] == 3
    # Without the reference threshold dog has 2 references and one hit (in the wrong frame for frame 0).
    r = detection_map(preds, refs)
    assert r["per_class"]["dog"] == pytest.approx(51 / 101)
    # A prediction in the right place but another frame never matches.
    assert detection_map([[], [_d("cat", 0.9, A)]], [[_d("cat", 0.9, A)], []])["map"] == 0.0
    assert detection_map([[_d("cat", 0.9, A)]], [[]])["map"] is None
    with pytest.raises(ValueError):
        detection_map([[]], [[], []])


def test_max_dets_per_frame_and_class():
    refs = [[_d("dog", 0.9, B)]]
    preds = [[_d("dog", 0.9 - 0.01 * i, (100 + i, 0, 110 + i, 10)) for i in range(3)] + [_d("dog", 0.1, B)]]
    assert detection_map(preds, refs, max_dets=3)["map"] == 0.0
    assert detection_map(preds, refs, max_dets=4)["map"] == pytest.approx(0.25)


def test_agrees_with_the_older_map_on_random_boxes():
    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"]

    def frames(n, k):
        out = []
        for _ in range(n):
            xy = rng.uniform(0, 80, (k, 2))
            wh = rng.uniform(5, 30, (k, 2))
            out.append([_d(labels[rng.integers(3)], float(rng.uniform()), [*xy[i], *(xy[i] + wh[i])]) for i in range(k)])
        return out

    refs = frames(6, 5)
    preds = [[{**d, "box": list(np.asarray(d["box"]) + rng.normal(0, 2, 4)), "score": float(rng.uniform())}
              for d in f] + f2 for f, f2 in zip(refs, frames(6, 3))]
    for thr in ((0.5,), IOU_50_95):
        assert detection_map(preds, refs, thr)["map"] == pytest.approx(agreement_map(preds, refs, thr))
