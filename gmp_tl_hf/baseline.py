"""The hand-made-features reference every cross-validation table is read against.

Mean and standard deviation over a clip of 40 log-mel bands, 20 MFCCs and their deltas (25 ms windows, 10 ms
hop), then logistic regression (standardised features, C = 0.1), fitted per fold on every clip outside the
test fold, for emotion and for speaker gender. All of it is ours: the classic statistics-of-frames baseline,
so a model's WAR/UAR and gender accuracy sit next to what no neural network gives on the same folds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from datasets import Dataset
from scipy.fft import dct
from scipy.signal import stft
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from .data import decode
from .data.metrics import aggregate_folds, ser_metrics

BASELINE_NAME = "MFCC/log-mel statistics + LR"


def log_mel_statistics(wave: np.ndarray, rate: int = 16000) -> np.ndarray:
    """Mean and std of 40 log-mel bands, 20 MFCCs and their deltas (25 ms windows, 10 ms hop)."""
    _, _, spec = stft(wave, fs=rate, nperseg=400, noverlap=240, nfft=512, boundary=None)
    power = np.abs(spec) ** 2
    mel = np.linspace(0, 2595 * np.log10(1 + (rate / 2) / 700), 42)
    edges = 700 * (10 ** (mel / 2595) - 1) / (rate / 2) * (power.shape[0] - 1)
    bins = np.arange(power.shape[0])[:, None]
    filters = np.maximum(
        0, np.minimum((bins - edges[:-2]) / (edges[1:-1] - edges[:-2]), (edges[2:] - bins) / (edges[2:] - edges[1:-1]))
    )
    log_mel = np.log(filters.T @ power + 1e-8)
    mfcc = dct(log_mel, type=2, axis=0, norm="ortho")[:20]
    frames = np.concatenate([log_mel, mfcc, np.gradient(mfcc, axis=1)])
    return np.concatenate([frames.mean(axis=1), frames.std(axis=1)])


def regression(c: float = 0.1, pca: int | None = None) -> Pipeline:
    """Standardised features, optionally reduced by PCA, into logistic regression: with the defaults the
    baseline's classifier; the encoder probes (``recipes/studies/encoder_probe.py``) vary ``c`` and ``pca``. The
    exact SVD: scikit-learn's default picks a randomized one for wide features, which changes from run to run."""
    reduce = [PCA(pca, svd_solver="full")] if pca else []
    return make_pipeline(StandardScaler(), *reduce, LogisticRegression(max_iter=5000, C=c))


def baseline_scores(dataset: Dataset, folds: list[int] | None = None) -> dict[str, Any]:
    """Per-fold test scores (WAR, UAR, macro-F1, gender accuracy) of the baseline on ``dataset``'s ``fold``
    column (default: every fold), and their mean/std over folds as :func:`aggregate_folds` gives them."""
    features = np.stack(
        [log_mel_statistics(decode(audio)) for audio in tqdm(dataset["audio"], desc="baseline features")]
    )
    labels, fold_of = np.asarray(dataset["emotion"]), np.asarray(dataset["fold"])
    genders = np.asarray(dataset["gender"])
    names = dataset.features["emotion"].names
    scores = {}
    for fold in sorted(set(fold_of.tolist())) if folds is None else folds:
        test = fold_of == fold
        emotion = regression().fit(features[~test], labels[~test])
        scores[fold] = ser_metrics(labels[test], emotion.predict(features[test]), names)
        train_genders, test_genders = ~test & (genders >= 0), test & (genders >= 0)
        gender_accuracy = None  # undefined without both genders to fit on and a known one to test
        if len(set(genders[train_genders].tolist())) > 1 and test_genders.any():
            gender = regression().fit(features[train_genders], genders[train_genders])
            gender_accuracy = float(gender.score(features[test_genders], genders[test_genders]))
        scores[fold]["gender_accuracy"] = gender_accuracy
    keys = ("war", "uar", "macro_f1", "gender_accuracy")
    return {
        "name": BASELINE_NAME,
        "per_fold": {fold: {key: score[key] for key in keys} for fold, score in scores.items()},
        **aggregate_folds(list(scores.values())),
    }
