"""COCO-style detection mAP of one set of boxes against another taken as ground truth (numpy only).

Used by the fidelity benchmark to score a path's detections (adapter, pixel, H.264) against the
same detector's detections on the original frames: the reference boxes with score >= the task's
threshold are the pseudo ground truth; every predicted box (scored, usually kept at a low
threshold) is ranked by score.

Per class and IoU threshold, as pycocotools does for one area range and up to `max_dets` boxes per
frame and class: predictions of all frames are sorted by score (stable), each is matched greedily to the
unmatched reference box of its frame with the highest IoU >= the threshold (true positive) or
counted as a false positive; precision is made monotone from the right and read at the 101 recall
points 0, 0.01, ..., 1 (0 past the highest recall reached). AP of a class is the mean over those
points; mAP is the mean over the classes that have reference boxes, and mAP@0.5:0.95 the mean of
that over IoU 0.50, 0.55, ..., 0.95. A class with predictions but no reference box is not scored
(as in COCO); its boxes do not lower any other class's AP.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..models.agreement import box_iou

IOU_50 = (0.5,)
IOU_50_95 = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
MAX_DETS = 100

Frames = Sequence[Sequence[dict[str, Any]]]
"""Per frame, a list of detections ``{"label", "score", "box": [x0, y0, x1, y1]}``."""


def average_precision(tp: np.ndarray, n_ref: int) -> float:
    """101-point interpolated AP from true-positive flags of predictions sorted best first.

    0 when there are no predictions (or `n_ref` is 0, which callers do not score).
    """
    tp = np.asarray(tp, dtype=np.float64)
    if n_ref <= 0 or tp.size == 0:
        return 0.0
    ctp = np.cumsum(tp)
    recall = ctp / n_ref
    precision = ctp / np.arange(1, tp.size + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    return float(np.where(idx < envelope.size, envelope[np.minimum(idx, envelope.size - 1)], 0.0).mean())


def _class_boxes(frames: Frames, label: str, min_score: float | None, max_dets: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for frame in frames:
        dets = sorted((d for d in frame if d["label"] == label and (min_score is None or d["score"] >= min_score)),
                      key=lambda d: -float(d["score"]))
        if max_dets is not None:
            dets = dets[:max_dets]
        out.append((np.array([d["box"] for d in dets], dtype=np.float64).reshape(-1, 4),
                    np.array([d["score"] for d in dets], dtype=np.float64)))
    return out


def _true_positives(preds: list[tuple[np.ndarray, np.ndarray]], refs: list[np.ndarray],
                    thresholds: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(T, P) true-positive flags per IoU threshold of all predictions sorted by score (stable), and the scores."""
    frame_of = np.concatenate([np.full(len(s), f) for f, (_, s) in enumerate(preds)]) if preds else np.zeros(0)
    local = np.concatenate([np.arange(len(s)) for _, s in preds]) if preds else np.zeros(0)
    scores = np.concatenate([s for _, s in preds]) if preds else np.zeros(0)
    order = np.argsort(-scores, kind="mergesort")
    ious = [box_iou(b, r) for (b, _), r in zip(preds, refs)]
    tp = np.zeros((len(thresholds), len(order)))
    for t, thr in enumerate(thresholds):
        used = [np.zeros(len(r), dtype=bool) for r in refs]
        for rank, i in enumerate(order):
            f, j = int(frame_of[i]), int(local[i])
            if not len(refs[f]):
                continue
            cand = np.where(used[f], -1.0, ious[f][j])
            best = int(np.argmax(cand))
            if cand[best] >= min(thr, 1 - 1e-10):
                used[f][best] = True
                tp[t, rank] = 1.0
    return tp, scores[order]


def detection_map(preds: Frames, refs: Frames, iou_thresholds: Sequence[float] = IOU_50, *,
                  ref_min_score: float | None = None, max_dets: int | None = MAX_DETS) -> dict[str, Any]:
    """mAP of `preds` with `refs` (their boxes with score >= `ref_min_score`) as ground truth;
    at most `max_dets` predictions per frame and class, best first (COCO's maxDets).

    Returns {"map": float or None (no reference box), "per_class": {label: AP averaged over the
    IoU thresholds}, "reference_boxes", "boxes", "frames"}.
    """
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predicted frames against {len(refs)} reference frames")
    ref_boxes = {}
    labels = sorted({d["label"] for frame in refs for d in frame if ref_min_score is None or d["score"] >= ref_min_score})
    per_class: dict[str, float] = {}
    for label in labels:
        refs_c = [b for b, _ in _class_boxes(refs, label, ref_min_score, None)]
        ref_boxes[label] = sum(len(b) for b in refs_c)
        tp, _ = _true_positives(_class_boxes(preds, label, None, max_dets), refs_c, iou_thresholds)
        per_class[label] = float(np.mean([average_precision(row, ref_boxes[label]) for row in tp]))
    return {"map": float(np.mean(list(per_class.values()))) if per_class else None, "per_class": per_class,
            "reference_boxes": int(sum(ref_boxes.values())), "boxes": int(sum(len(f) for f in preds)),
            "frames": len(preds)}


def map_report(preds: Frames, refs: Frames, ref_min_score: float | None) -> dict[str, Any]:
    """mAP@0.5 and mAP@0.5:0.95 (with per-class AP@0.5) of `preds` against `refs` >= `ref_min_score`."""
    m50 = detection_map(preds, refs, IOU_50, ref_min_score=ref_min_score)
    m5095 = detection_map(preds, refs, IOU_50_95, ref_min_score=ref_min_score)
    return {"map50": m50["map"], "map50_95": m5095["map"], "ap50_per_class": m50["per_class"],
            "reference_boxes": m50["reference_boxes"], "boxes": m50["boxes"], "frames": m50["frames"],
            "reference_min_score": ref_min_score}
