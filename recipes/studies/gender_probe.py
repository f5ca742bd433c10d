"""Where is speaker gender linearly decodable for new speakers? Probes on a finished cross-validation run.

For every fold of RUN_DIR and every model asked for (``mtl``, ``stage2``, ``random_init``), the mean and
standard deviation over frames of every encoder layer and of the conv features are computed for the
fold's train, validation and test clips; logistic regression (standardised features, optionally PCA) is
fitted on train + validation and scored on the test speakers. MFCC/log-mel statistics go through the same
probe as the reference. Prints mean and lowest fold accuracy per feature and probe setting.

    python recipes/studies/gender_probe.py runs/emodb --models mtl stage2 random_init
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gmp_tl_hf import default_feature_extractor
from gmp_tl_hf.arguments import DataArguments
from gmp_tl_hf.baseline import log_mel_statistics
from gmp_tl_hf.data import decode
from gmp_tl_hf.fold_data import prepare_splits
from gmp_tl_hf.model_setup import load_gmp_model

PARTS = ("train", "validation", "test")
SETTINGS = [(pca, c) for pca in (None, 32, 8) for c in (1.0, 0.1, 0.01)]


def statistics(frames: torch.Tensor) -> np.ndarray:
    return torch.cat([frames.mean(0), frames.std(0)]).numpy()


@torch.no_grad()
def model_features(model, audios) -> dict[str, np.ndarray]:
    """Per clip: statistics of the conv features and of every layer's frames (one clip at a time)."""
    extractor = default_feature_extractor()
    features: dict[str, list] = {}
    for audio in audios:
        inputs = extractor(decode(audio), sampling_rate=16000, return_tensors="pt").input_values
        conv = model.encoder_model.feature_extractor(inputs)[0].T
        hidden = model(inputs, output_hidden_states=True).hidden_states
        features.setdefault("conv", []).append(statistics(conv))
        for layer, frames in enumerate(hidden):
            features.setdefault(f"layer {layer}", []).append(statistics(frames[0]))
        features.setdefault("all layers", []).append(np.concatenate([statistics(h[0]) for h in hidden]))
    return {name: np.stack(rows) for name, rows in features.items()}


def probe(train: np.ndarray, train_y: np.ndarray, test: np.ndarray, test_y: np.ndarray, pca, c) -> float:
    steps = [
        StandardScaler(),
        *([PCA(pca)] if pca and pca < min(train.shape) else []),
        LogisticRegression(C=c, max_iter=3000),
    ]
    return float(make_pipeline(*steps).fit(train, train_y).score(test, test_y))


def main(argv: list[str] | None = None) -> dict[tuple, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a finished `gmp-tl cv` output folder")
    parser.add_argument("--models", nargs="+", default=["mtl", "stage2"], help="mtl, stage1, stage2, random_init")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    scores: dict[tuple, list[float]] = {}
    for fold_dir in sorted(args.run_dir.glob("fold*")):
        data = json.loads((fold_dir / "mtl" / "results.json").read_text())["data"]
        splits = prepare_splits(DataArguments(**data))
        genders = {part: np.asarray(splits[part]["gender"]) for part in PARTS}
        train_y = np.concatenate([genders["train"], genders["validation"]])
        features = {
            "mfcc": {part: np.stack([log_mel_statistics(decode(a)) for a in splits[part]["audio"]]) for part in PARTS}
        }
        for name in args.models:
            path = args.run_dir / "random_init" if name == "random_init" else fold_dir / name
            model = load_gmp_model(path).eval()
            per_part = {part: model_features(model, splits[part]["audio"]) for part in PARTS}
            for feature in per_part["train"]:
                features[f"{name}: {feature}"] = {part: per_part[part][feature] for part in PARTS}
        for feature, parts in features.items():
            train = np.concatenate([parts["train"], parts["validation"]])
            for pca, c in SETTINGS:
                accuracy = probe(train, train_y, parts["test"], genders["test"], pca, c)
                scores.setdefault((feature, pca, c), []).append(accuracy)
        print(f"{fold_dir.name}: done", flush=True)
    print("| feature | PCA | C | mean accuracy | lowest fold |\n|---|---|---|---|---|")
    for (feature, pca, c), values in sorted(scores.items(), key=lambda item: -np.mean(item[1])):
        print(f"| {feature} | {pca or '-'} | {c} | {100 * np.mean(values):.1f} | {100 * min(values):.1f} |")
    return scores


if __name__ == "__main__":
    main()
