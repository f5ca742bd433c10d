"""SER metrics: WAR (accuracy), UAR (mean per-class recall), macro-F1, per-class recall, confusion matrix.

UAR averages the recall of the classes present in the references (a class with no test utterance
has no recall); WAR is plain accuracy. Fold results aggregate as mean and standard deviation
(numpy's default, ddof=0) plus the pooled confusion matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

# Load with evaluate.load(SER_METRIC_PATH): evaluate.load("accuracy") needs the Hub, this does not.
SER_METRIC_PATH = str(Path(__file__).with_name("ser_metric") / "ser_metric.py")


def ser_metrics(
    references: Sequence[int], predictions: Sequence[int], label_names: Sequence[str] | None = None
) -> dict:
    """WAR, UAR, macro-F1, per-class recall and the confusion matrix (rows: reference, cols: prediction)."""
    references = np.asarray(references, dtype=np.int64).ravel()
    predictions = np.asarray(predictions, dtype=np.int64).ravel()
    if references.shape != predictions.shape or references.size == 0:
        raise ValueError(f"need as many predictions as references (> 0), got {predictions.size} and {references.size}")
    num_classes = len(label_names) if label_names is not None else int(max(references.max(), predictions.max())) + 1
    names = list(label_names) if label_names is not None else [str(i) for i in range(num_classes)]
    classes = list(range(num_classes))
    present = sorted(set(references.tolist()))
    recalls = recall_score(references, predictions, labels=classes, average=None, zero_division=0)
    return {
        "war": float(accuracy_score(references, predictions)),
        "uar": float(recall_score(references, predictions, labels=present, average="macro", zero_division=0)),
        "macro_f1": float(f1_score(references, predictions, labels=present, average="macro", zero_division=0)),
        "recall": {names[c]: float(recalls[c]) for c in present},
        "confusion_matrix": confusion_matrix(references, predictions, labels=classes).tolist(),
        "labels": names,
    }


def make_compute_metrics(id2label: dict[int, str], gender: bool = True) -> Callable:
    """``compute_metrics`` for the Trainer: flat floats (war, uar, macro_f1, recall_<class>).

    Predictions may be a tuple (emotion logits first, then gender logits); when the gender labels
    are among the Trainer's ``label_names`` the gender accuracy is reported too, unless ``gender`` is
    false (a stage that does not train the gender head: its accuracy would describe nothing).
    """
    names = [id2label[i] for i in range(len(id2label))]

    def compute_metrics(eval_prediction) -> dict[str, float]:
        predictions = eval_prediction.predictions
        label_ids = eval_prediction.label_ids
        emotion_logits = predictions[0] if isinstance(predictions, (tuple, list)) else predictions
        emotion_labels = label_ids[0] if isinstance(label_ids, (tuple, list)) else label_ids
        scores = ser_metrics(emotion_labels, np.argmax(emotion_logits, axis=-1), names)
        flat = {key: scores[key] for key in ("war", "uar", "macro_f1")}
        flat.update({f"recall_{name}": value for name, value in scores["recall"].items()})
        with_gender = isinstance(label_ids, (tuple, list)) and len(label_ids) > 1
        if gender and with_gender and isinstance(predictions, (tuple, list)):
            accuracy = gender_accuracy(label_ids[1], predictions[1])
            if accuracy is not None:
                flat["gender_accuracy"] = accuracy
        return flat

    return compute_metrics


def gender_accuracy(references: Sequence[int], logits: np.ndarray) -> float | None:
    """Accuracy of the gender head on the utterances with a known gender (label >= 0); None without any."""
    references = np.asarray(references).ravel()
    known = references >= 0
    if not known.any():
        return None
    return float((np.argmax(np.asarray(logits), axis=-1)[known] == references[known]).mean())


def aggregate_folds(fold_scores: Sequence[dict]) -> dict:
    """Mean/std of WAR, UAR and macro-F1 over folds, and WAR/UAR of the pooled confusion matrix."""
    if not fold_scores:
        raise ValueError("no fold results to aggregate")
    summary: dict = {"folds": len(fold_scores)}
    keys = ["war", "uar", "macro_f1"]
    if all(scores.get("gender_accuracy") is not None for scores in fold_scores):
        keys.append("gender_accuracy")
    for key in keys:
        values = np.array([scores[key] for scores in fold_scores], dtype=np.float64)
        summary[f"{key}_mean"] = float(values.mean())
        summary[f"{key}_std"] = float(values.std())
    pooled = np.sum([np.asarray(scores["confusion_matrix"]) for scores in fold_scores], axis=0)
    support = pooled.sum(axis=1)
    summary["pooled_confusion_matrix"] = pooled.tolist()
    summary["pooled_war"] = float(np.trace(pooled) / pooled.sum())
    summary["pooled_uar"] = float(np.mean(np.diag(pooled)[support > 0] / support[support > 0]))
    summary["labels"] = fold_scores[0].get("labels")
    return summary
