"""What can a linear classifier read from each layer of an encoder for new speakers: gender, or emotion?

For every fold of the RUN_DIRs (or, with ``--data CONFIG``, every fold of that recipe config's data: no run
needed) and every model asked for (``mtl``, ``stage1``, ``stage2``, ``random_init``, or any encoder checkpoint
given as ``--encoder NAME=PATH``, where ``{fold}`` in PATH is the fold number: e.g. the study's task-adaptive
encoders, one per fold), the mean and standard deviation over frames of every encoder layer and of the conv
features are computed for the fold's train, validation and test clips; logistic regression (standardised
features, optionally PCA) is fitted on train + validation (as the baseline; ``--fit_on train``: the clips
fine-tuning trains on) and scored on the test speakers: accuracy for gender, UAR for emotion. MFCC/log-mel
statistics go through the same probe as the reference; with no PCA and C = 0.1 it is the MFCC + LR baseline
of every table (the row marked ``baseline setting``). Prints mean and lowest fold score per feature and probe
setting. The encoder is frozen: this says what an encoder offers before (or after) fine-tuning, not what
fine-tuning makes of it. Settings are ranked on the test folds, so the best row is an optimistic bound, not a result.

    python recipes/studies/encoder_probe.py runs/emodb --models mtl stage2 random_init            # gender
    python recipes/studies/encoder_probe.py runs/study/emodb/native/from-pretrain_small_adaptive/fold*/gmp-tl/seed1 \
        --target emotion --models stage2 \
        --encoder pre-trained=runs/study/pretrain/pretrain_small_adaptive-emodb-native-fold{fold}
    python recipes/studies/encoder_probe.py --data recipes/configs/ravdess12_small_scratch.yaml \
        --data_dir ../shared/data/ravdess12 --target emotion \
        --encoder random=runs/study/ravdess12/native/gmp-tl/seed1/random_init
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import balanced_accuracy_score

from gmp_tl_hf import default_feature_extractor
from gmp_tl_hf.arguments import DataArguments, load_config_file
from gmp_tl_hf.baseline import log_mel_statistics, regression
from gmp_tl_hf.data import decode
from gmp_tl_hf.data.splits import num_folds
from gmp_tl_hf.fold_data import load_data, prepare_splits
from gmp_tl_hf.model_setup import load_feature_model

PARTS = ("train", "validation", "test")
SETTINGS = [(pca, c) for pca in (None, 32, 8) for c in (1.0, 0.1, 0.01)]
BASELINE_SETTING = (None, 0.1)  # gmp_tl_hf.baseline.regression()'s defaults: no PCA, C = 0.1


def statistics(frames: torch.Tensor) -> np.ndarray:
    return torch.cat([frames.mean(0), frames.std(0)]).numpy()


@torch.no_grad()
def clip_features(model, extractor, audio) -> dict[str, np.ndarray]:
    """Statistics of the conv features, of every layer's frames and of all layers together, for one clip."""
    inputs = extractor(decode(audio), sampling_rate=16000, return_tensors="pt").input_values
    conv = model.encoder_model.feature_extractor(inputs)[0].T
    hidden = model(inputs, output_hidden_states=True).hidden_states
    layers = {f"layer {layer}": statistics(frames[0]) for layer, frames in enumerate(hidden)}
    return {"conv": statistics(conv), **layers, "all layers": np.concatenate(list(layers.values()))}


def probe(train: np.ndarray, train_y: np.ndarray, test: np.ndarray, test_y: np.ndarray, pca, c, target: str) -> float:
    """Test accuracy (gender) or UAR (emotion) of the probe fitted on ``train`` (PCA only where it reduces)."""
    predicted = regression(c, pca if pca and pca < min(train.shape) else None).fit(train, train_y).predict(test)
    if target == "emotion":
        return float(balanced_accuracy_score(test_y, predicted))
    return float((predicted == test_y).mean())


class FeatureCache:
    """Each clip's features computed once per source (the MFCC statistics, or a checkpoint's folder), whatever
    the number of folds it appears in: an encoder that is the same for every fold is run over the corpus once."""

    def __init__(self):
        self.rows: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        self.models: dict[str, torch.nn.Module] = {}
        self.extractor = default_feature_extractor()

    def mfcc(self, part: Dataset) -> dict[str, np.ndarray]:
        return self._features("mfcc", part, lambda audio: {"mfcc": log_mel_statistics(decode(audio))})

    def encoder(self, path: Path, part: Dataset) -> dict[str, np.ndarray]:
        source = str(path.resolve())
        return self._features(source, part, lambda audio: clip_features(self._model(source), self.extractor, audio))

    def _model(self, source: str) -> torch.nn.Module:
        if source not in self.models:
            self.models = {source: load_feature_model(source).eval()}  # one model in memory at a time
        return self.models[source]

    def _features(self, source: str, part: Dataset, compute) -> dict[str, np.ndarray]:
        for clip, audio in zip(part["id"], part["audio"]):
            if (source, clip) not in self.rows:
                self.rows[source, clip] = compute(audio)
        rows = [self.rows[source, clip] for clip in part["id"]]
        return {name: np.stack([row[name] for row in rows]) for name in rows[0]}


def model_paths(fold: int, fold_dir: Path | None, models: list[str], encoders: list[str]) -> dict[str, Path]:
    """The checkpoint of each model to probe on this fold (``random_init``: its run's initial encoder)."""
    if models and fold_dir is None:
        raise SystemExit(f"--models {' '.join(models)} needs run folders; with --data, name encoders with --encoder")
    paths = {name: fold_dir.parent / "random_init" if name == "random_init" else fold_dir / name for name in models}
    for encoder in encoders:
        name, _, pattern = encoder.partition("=")
        if not pattern:
            raise SystemExit(f"--encoder {encoder!r}: expected NAME=PATH")
        paths[name] = Path(pattern.replace("{fold}", str(fold)))
    for name, path in paths.items():
        if not (path / "config.json").is_file():
            raise SystemExit(f"{name}: no checkpoint at {path}")
    return paths


def folds_to_probe(args: argparse.Namespace) -> list[tuple[int, DataArguments, Path | None]]:
    """Each fold's number, data arguments and run folder: the fold folders of the run folders (their MTL
    step's data), or every fold of the ``--data`` config's fold protocol (no run folder)."""
    if args.data:
        values = load_config_file(args.data).get("data", {})
        values["data_dir"] = args.data_dir or values.get("data_dir")
        if not values["data_dir"]:
            raise SystemExit(f"{args.data} names no data_dir: give --data_dir")
        folds = args.folds or range(num_folds(load_data(DataArguments(**values))))
        return [(fold, DataArguments(**{**values, "fold": fold}), None) for fold in folds]
    fold_dirs = sorted({path for run_dir in args.run_dirs for path in run_dir.glob("fold*") if path.is_dir()})
    if not fold_dirs:
        raise SystemExit(f"{' '.join(map(str, args.run_dirs))}: no fold folders (or give --data)")
    if len({path.name for path in fold_dirs}) < len(fold_dirs):
        raise SystemExit("a fold occurs in two of the run folders")
    chosen = []
    for fold_dir in fold_dirs:
        data = DataArguments(**json.loads((fold_dir / "mtl" / "results.json").read_text())["data"])
        if not args.folds or data.fold in args.folds:
            chosen.append((data.fold, data, fold_dir))
    return chosen


def main(argv: list[str] | None = None) -> dict[tuple, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", type=Path, nargs="*", metavar="run_dir",
                        help="a finished `gmp-tl cv` folder or a study arm's seed folder (fold* inside)")  # fmt: skip
    parser.add_argument("--data", type=Path, help="instead of run folders: a recipe config, every fold of its data")
    parser.add_argument("--data_dir", help="the corpus folder, where the --data config names none")
    parser.add_argument("--folds", type=int, nargs="+", help="default: every fold")
    parser.add_argument("--target", choices=["gender", "emotion"], default="gender", help="the column to probe")
    parser.add_argument("--fit_on", choices=["train+validation", "train"], default="train+validation",
                        help="the clips the probe is fitted on: as the baseline, or as fine-tuning trains")  # fmt: skip
    parser.add_argument("--models", nargs="*", help="mtl, stage1, stage2, random_init (default: mtl stage2)")
    parser.add_argument("--encoder", action="append", default=[], metavar="NAME=PATH",
                        help="another checkpoint to probe; {fold} in PATH is the fold number")  # fmt: skip
    args = parser.parse_args(argv)
    if bool(args.data) == bool(args.run_dirs):
        parser.error("give run folders or --data, not both")
    models = args.models if args.models is not None else ([] if args.data else ["mtl", "stage2"])
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    scores: dict[tuple, list[float]] = {}
    caches: dict[tuple, FeatureCache] = {}  # per corpus: clip ids are unique within one
    for fold, data, fold_dir in folds_to_probe(args):
        cache = caches.setdefault((data.dataset, data.data_dir, data.classes), FeatureCache())
        splits = prepare_splits(data)
        targets = {part: np.asarray(splits[part][args.target]) for part in PARTS}
        fit = ("train", "validation") if args.fit_on == "train+validation" else ("train",)
        train_y = np.concatenate([targets[part] for part in fit])
        features = {"mfcc": {part: cache.mfcc(splits[part])["mfcc"] for part in PARTS}}
        for name, path in model_paths(fold, fold_dir, models, args.encoder).items():
            per_part = {part: cache.encoder(path, splits[part]) for part in PARTS}
            for feature in per_part["train"]:
                features[f"{name}: {feature}"] = {part: per_part[part][feature] for part in PARTS}
        for feature, parts in features.items():
            train = np.concatenate([parts[part] for part in fit])
            for pca, c in SETTINGS:
                score = probe(train, train_y, parts["test"], targets["test"], pca, c, args.target)
                scores.setdefault((feature, pca, c), []).append(score)
        print(f"fold {fold}: done", flush=True)
    metric = "UAR" if args.target == "emotion" else "accuracy"
    print(f"| feature | PCA | C | mean {args.target} {metric} | lowest fold |\n|---|---|---|---|---|")
    for (feature, pca, c), values in sorted(scores.items(), key=lambda item: -np.mean(item[1])):
        note = " (baseline setting)" if (pca, c) == BASELINE_SETTING else ""
        print(f"| {feature} | {pca or '-'} | {c}{note} | {100 * np.mean(values):.1f} | {100 * min(values):.1f} |")
    return scores


if __name__ == "__main__":
    main()
