"""Agreement between the adapter path and the pixel path: top-1/KL for classes, mAP for boxes."""

from __future__ import annotations

import numpy as np
import torch


def classification_agreement(logits_adapter: torch.Tensor, logits_reference: torch.Tensor, k: int = 5) -> dict:
    """How well predictions follow a reference path, frame by frame.

    top1_agreement: share of frames with the same top-1 class; top5_overlap: mean |top-5 ∩ top-5| / 5;
    mean_kl: mean KL(reference || adapter) of the softmax distributions; constant_label_share: the
    share of frames the reference's most frequent top-1 class covers, i.e. what always answering one
    label would score (top-1 agreement means little when it is close to this).
    """
    la = logits_adapter.float().log_softmax(-1)
    lp = logits_reference.float().log_softmax(-1)
    ref_top1 = lp.argmax(-1)
    top1 = (la.argmax(-1) == ref_top1).float().mean().item()
    k = min(k, la.shape[-1])
    ta, tp = la.topk(k, -1).indices, lp.topk(k, -1).indices
    overlap = (ta[:, :, None] == tp[:, None, :]).any(-1).float().sum(-1).mean().item() / k
    kl = (lp.exp() * (lp - la)).sum(-1).mean().item()
    const = torch.bincount(ref_top1).max().item() / max(1, ref_top1.numel())
    return {"top1_agreement": float(top1), f"top{k}_overlap": float(overlap), "mean_kl": float(kl),
            "constant_label_share": float(const), "frames": int(la.shape[0])}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (n, m) of boxes (n, 4) and (m, 4) given as x0, y0, x1, y1 (empty boxes: IoU 0)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """COCO-style 101-point interpolated average precision."""
    if recall.size == 0:
        return 0.0
    prec = np.maximum.accumulate(precision[::-1])[::-1]
    points = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, points, side="left")
    return float(np.mean([prec[i] if i < len(prec) else 0.0 for i in idx]))


def detection_map(preds: list[list[dict]], refs: list[list[dict]], iou_thresholds: tuple[float, ...] = (0.5,)) -> float | None:
    """mAP of `preds` taking `refs` as ground truth (per frame lists of {label, score, box}).

    Averaged over the classes present in `refs` and over `iou_thresholds`; None when `refs` is empty.
    """
    labels = sorted({d["label"] for frame in refs for d in frame})
    if not labels:
        return None
    aps = []
    for thr in iou_thresholds:
        for label in labels:
            n_gt = sum(1 for frame in refs for d in frame if d["label"] == label)
            scored = []
            for f, frame in enumerate(preds):
                for d in frame:
                    if d["label"] == label:
                        scored.append((d["score"], f, d["box"]))
            scored.sort(key=lambda t: -t[0])
            matched: dict[int, set[int]] = {}
            tp = np.zeros(len(scored))
            for i, (_, f, box) in enumerate(scored):
                gts = [d["box"] for d in refs[f] if d["label"] == label]
                if not gts:
                    continue
                ious = box_iou(np.array([box], dtype=np.float64), np.array(gts, dtype=np.float64))[0]
                used = matched.setdefault(f, set())
                order = [j for j in np.argsort(-ious) if j not in used and ious[j] >= thr]
                if order:
                    used.add(int(order[0]))
                    tp[i] = 1
            ctp = np.cumsum(tp)
            recall = ctp / max(n_gt, 1)
            precision = ctp / np.arange(1, len(scored) + 1) if len(scored) else np.zeros(0)
            aps.append(_ap(recall, precision))
    return float(np.mean(aps))


def caption_ids(tokens: torch.Tensor) -> list[list[int]]:
    """Per-frame caption token ids from a raw ``tokens`` tensor (N, L) padded with -1."""
    return [[int(i) for i in row if i >= 0] for row in tokens.detach().long().cpu().tolist()]


def token_agreement(captions: list[list[int]], references: list[list[int]]) -> float:
    """Mean over frames of matching positions / the longer caption's length (1 for two empty captions)."""
    scores = []
    for a, r in zip(captions, references, strict=True):
        n = max(len(a), len(r))
        scores.append(1.0 if n == 0 else sum(x == y for x, y in zip(a, r)) / n)
    return float(np.mean(scores)) if scores else 1.0


def _ngrams(seq: list[int], n: int) -> dict[tuple[int, ...], int]:
    out: dict[tuple[int, ...], int] = {}
    for i in range(len(seq) - n + 1):
        g = tuple(seq[i:i + n])
        out[g] = out.get(g, 0) + 1
    return out


def corpus_bleu(captions: list[list[int]], references: list[list[int]], max_n: int = 4) -> float:
    """Corpus BLEU-`max_n` of token-id captions against one reference each.

    Clipped n-gram precisions, add-one smoothed for n > 1 (Lin & Och 2004), geometric mean,
    brevity penalty exp(1 - ref_len / cand_len) when shorter; 1 when every caption equals its
    reference (empty ones included).
    """
    if all(a == r for a, r in zip(captions, references, strict=True)):
        return 1.0
    cand_len = sum(len(a) for a in captions)
    ref_len = sum(len(r) for r in references)
    if cand_len == 0:
        return 0.0
    log_p = 0.0
    for n in range(1, max_n + 1):
        match = total = 0
        for a, r in zip(captions, references):
            ca, cr = _ngrams(a, n), _ngrams(r, n)
            match += sum(min(c, cr.get(g, 0)) for g, c in ca.items())
            total += max(len(a) - n + 1, 0)
        if n == 1:
            if match == 0:
                return 0.0
            log_p += np.log(match / total)
        else:
            log_p += np.log((match + 1) / (total + 1))
    bp = 1.0 if cand_len >= ref_len else float(np.exp(1 - ref_len / cand_len))
    return float(bp * np.exp(log_p / max_n))


def caption_agreement(tokens: torch.Tensor, reference_tokens: torch.Tensor) -> dict:
    """How well captions follow a reference path's: token agreement (see `token_agreement`), corpus
    BLEU-4 on token ids, the share of frames with identical captions, and the share of frames the
    reference's most frequent caption covers (what always giving one caption would match)."""
    a, r = caption_ids(tokens), caption_ids(reference_tokens)
    counts: dict[tuple[int, ...], int] = {}
    for c in r:
        counts[tuple(c)] = counts.get(tuple(c), 0) + 1
    return {"token_agreement": token_agreement(a, r), "bleu4": corpus_bleu(a, r),
            "exact_match": float(np.mean([x == y for x, y in zip(a, r)])) if r else 1.0,
            "constant_caption_share": max(counts.values()) / len(r) if r else 0.0, "frames": len(r)}
