"""Model quality figures: AUC, log loss, lift and gains by decile, calibration by decile."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score


def decile_table(y: np.ndarray, scores: np.ndarray, groups: int = 10) -> list[dict]:
    """Rows ranked by score (highest first) cut into ``groups`` equal slices: each slice's
    response rate, lift over the base rate, and cumulative gains and lift."""
    y = np.asarray(y, dtype=np.float64)
    order = np.argsort(-np.asarray(scores), kind="stable")
    ranked = y[order]
    ranked_scores = np.asarray(scores)[order]
    base = ranked.mean() if len(ranked) else 0.0
    total_pos = ranked.sum()
    out, seen, seen_pos = [], 0, 0.0
    for decile, (chunk, chunk_scores) in enumerate(
            zip(np.array_split(ranked, groups), np.array_split(ranked_scores, groups)), 1):
        if len(chunk) == 0:
            continue
        seen += len(chunk)
        seen_pos += chunk.sum()
        rate = float(chunk.mean())
        out.append({
            "decile": decile,
            "rows": len(chunk),
            "positives": int(chunk.sum()),
            "response_rate": rate,
            "lift": rate / base if base else 0.0,
            "cumulative_gain": float(seen_pos / total_pos) if total_pos else 0.0,
            "cumulative_lift": float((seen_pos / seen) / base) if base else 0.0,
            "min_score": float(chunk_scores.min()),
            "max_score": float(chunk_scores.max()),
        })
    return out


def calibration_table(y: np.ndarray, scores: np.ndarray, groups: int = 10) -> list[dict]:
    """Rows ranked by score (lowest first) cut into equal slices: mean predicted score beside
    the observed rate; a calibrated model has the two close in every slice."""
    y = np.asarray(y, dtype=np.float64)
    order = np.argsort(np.asarray(scores), kind="stable")
    out = []
    for decile, idx in enumerate(np.array_split(order, groups), 1):
        if len(idx) == 0:
            continue
        out.append({"decile": decile, "rows": len(idx),
                    "mean_score": float(np.mean(scores[idx])),
                    "observed_rate": float(np.mean(y[idx]))})
    return out


def evaluate_scores(y: np.ndarray, scores: np.ndarray) -> dict:
    """All figures of a labelled, scored set; ``y`` must hold both classes."""
    y = np.asarray(y).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    clipped = np.clip(scores, 1e-15, 1 - 1e-15)
    lift = decile_table(y, scores)
    return {
        "rows": len(y),
        "positives": int(y.sum()),
        "base_rate": float(y.mean()),
        "auc": float(roc_auc_score(y, scores)),
        "log_loss": float(log_loss(y, clipped, labels=[0, 1])),
        "top_decile_lift": lift[0]["lift"] if lift else 0.0,
        "lift_table": lift,
        "calibration": calibration_table(y, scores),
    }
