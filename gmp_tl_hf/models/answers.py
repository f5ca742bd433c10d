"""What the pipelines answer, from logits: ranked labels and the timeline. numpy only, so that the
torch pipeline and the onnxruntime one (which needs no torch) give the same output format."""

from __future__ import annotations

from typing import Any

import numpy as np


def scores_of(logits, function_to_apply: str | None = None) -> np.ndarray:
    """Softmax (default), sigmoid or the raw values of a `(labels,)` logit vector, as float64."""
    logits = np.asarray(logits, dtype=np.float64)
    if function_to_apply in (None, "softmax"):
        shifted = np.exp(logits - logits.max())
        return shifted / shifted.sum()
    if function_to_apply == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    return logits


def ranked_labels(logits, id2label: dict, top_k: int, function_to_apply: str | None = None) -> list[dict]:
    """The standard pipeline output: the ``top_k`` labels with their scores, best first."""
    scores = scores_of(logits, function_to_apply)
    order = np.argsort(-scores, kind="stable")[: min(top_k, scores.size)]
    return [{"score": float(scores[i]), "label": id2label[int(i)]} for i in order]


def timeline_entries(
    window_logits,
    window_frames: int,
    num_frames: int,
    frame_seconds: float,
    id2label: dict,
    function_to_apply: str | None = None,
) -> list[dict[str, Any]]:
    """One entry per window of one clip (``window_logits`` `(windows, labels)`, windows with audio only):
    its span in seconds, best label and score, and every label's score."""
    timeline = []
    for index, logits in enumerate(np.asarray(window_logits)):
        ranked = ranked_labels(logits, id2label, len(id2label), function_to_apply)
        timeline.append(
            {
                "start": round(index * window_frames * frame_seconds, 3),
                "end": round(min((index + 1) * window_frames, num_frames) * frame_seconds, 3),
                "label": ranked[0]["label"],
                "score": ranked[0]["score"],
                "scores": {entry["label"]: entry["score"] for entry in ranked},
            }
        )
    return timeline


__all__ = ["ranked_labels", "scores_of", "timeline_entries"]
