"""EmoDB ablation study: what each part of GMP-TL is worth, from a randomly initialised encoder.

    python recipes/studies/emodb_ablation.py --data_dir ../shared/data/emodb --output_dir runs/emodb-study
    python recipes/studies/emodb_ablation.py ... --classes iemocap4 --arms plain gmp-tl --seeds 1
    python recipes/studies/emodb_ablation.py ... --ablation_seeds 1 2        # ablations on two seeds

Arms (same folds, same per-stage epochs, same seeds; config recipes/configs/emodb_small_scratch.yaml):
    plain          HubertForSequenceClassification-style fine-tune (utterance CE), 13 epochs = the
                   whole GMP-TL budget (MTL 5 + stage 1 5 + stage 2 3)
    mtl            the MTL model (emotion + gender) of the gmp-tl runs
    gmp-tl         MTL -> GMPs (50/100/500) -> stage 1 -> stage 2 (AM-Softmax)
    no-gender      gmp-tl with gender_loss_weight = 0 in the MTL model
    single-scale   gmp-tl with one GMP scale (K = 100); reuses the MTL models of gmp-tl (same seed)
    linear-stage2  gmp-tl with a linear stage-2 head; reuses MTL, GMPs and stage 1 of gmp-tl (same seed)
    mfcc           MFCC/log-mel statistics + logistic regression (scikit-learn), the classic reference

Writes <output_dir>/<classes>/study_results.{md,json}: WAR/UAR mean +- std over folds (averaged
over seeds) and, for several seeds, mean +- std of the seed means.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from scipy.fft import dct
from scipy.signal import stft
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gmp_tl_hf.arguments import DataArguments, load_config_file
from gmp_tl_hf.cli import setup_logging
from gmp_tl_hf.cross_validation import run_cv
from gmp_tl_hf.data import decode
from gmp_tl_hf.metrics import aggregate_folds, ser_metrics
from gmp_tl_hf.training import load_data

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "recipes" / "configs" / "emodb_small_scratch.yaml"
ARMS = ("mfcc", "plain", "gmp-tl", "no-gender", "single-scale", "linear-stage2")
REUSE = {"single-scale": ("mtl",), "linear-stage2": ("mtl", "gmp", "stage1")}


def arm_config(base: dict, arm: str, seed: int, data_dir: str, classes: str) -> tuple[dict, str]:
    config = json.loads(json.dumps(base))
    config["data"].update(data_dir=data_dir, classes=classes)
    config["training"]["seed"] = seed
    if arm == "plain":
        return config, "plain"
    if arm == "no-gender":
        config.setdefault("mtl", {})["gender_loss_weight"] = 0.0
    elif arm == "single-scale":
        config["gmp"]["cluster_sizes"] = [100]
    elif arm == "linear-stage2":
        config.setdefault("stage2", {})["emotion_head"] = "linear"
    return config, "gmp-tl"


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


def run_mfcc(config: dict, output_dir: Path) -> dict:
    """The classic reference on the same folds: statistics of hand-made features + logistic regression."""
    dataset = load_data(DataArguments(**config["data"]))
    features = np.stack([log_mel_statistics(decode(audio)) for audio in dataset["audio"]])
    labels, folds = np.asarray(dataset["emotion"]), np.asarray(dataset["fold"])
    genders = np.asarray(dataset["gender"])
    names = dataset.features["emotion"].names
    scores = []
    for fold in sorted(set(folds.tolist())):
        test = folds == fold
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=0.1))
        model.fit(features[~test], labels[~test])
        scores.append(ser_metrics(labels[test], model.predict(features[test]), names))
        known = genders >= 0  # the gender baseline beside the models' gender heads, same folds
        gender_model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=0.1))
        gender_model.fit(features[~test & known], genders[~test & known])
        scores[-1]["gender_accuracy"] = float(gender_model.score(features[test & known], genders[test & known]))
    summary = {
        "stages": {
            "mfcc": {
                "per_fold": {
                    f: {k: s[k] for k in ("war", "uar", "macro_f1", "gender_accuracy")} for f, s in enumerate(scores)
                },
                **aggregate_folds(scores),
            }
        }
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "cv_results.json").write_text(json.dumps(summary, indent=2))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data" / "emodb"))
    parser.add_argument("--output_dir", default="runs/emodb-study")
    parser.add_argument("--classes", choices=["native", "iemocap4"], default="native")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds of plain and gmp-tl (and mtl, inside it)"
    )
    parser.add_argument(
        "--ablation_seeds", type=int, nargs="+", default=None, help="seeds of the other arms (default: the first seed)"
    )
    parser.add_argument("--config", default=str(CONFIG))
    args = parser.parse_args()
    setup_logging()
    base = load_config_file(args.config)
    root = Path(args.output_dir) / args.classes
    results: dict[str, list[dict]] = {}
    timings: dict[str, list[float]] = {}
    for arm in args.arms:
        if arm == "mfcc":  # deterministic: one run
            seeds = args.seeds[:1]
        elif arm in ("plain", "gmp-tl"):
            seeds = args.seeds
        else:
            seeds = args.ablation_seeds or args.seeds[:1]
        for seed in seeds:
            run_dir = root / arm / f"seed{seed}"
            start = time.perf_counter()
            if arm == "mfcc":
                summary = run_mfcc(arm_config(base, "plain", seed, args.data_dir, args.classes)[0], run_dir)
            else:
                config, chain = arm_config(base, arm, seed, args.data_dir, args.classes)
                for step in REUSE.get(arm, ()):
                    for source in sorted((root / "gmp-tl" / f"seed{seed}").glob(f"fold*/{step}")):
                        target = run_dir / source.parent.name / step
                        if not target.exists():
                            shutil.copytree(source, target)
                summary = run_cv(config, run_dir, chain)
            # mfcc always runs; a CV run reports the training + extraction time its steps recorded,
            # which stays right when a rerun reuses finished steps
            timings.setdefault(arm, []).append(summary.get("compute_time_s", time.perf_counter() - start))
            stages = {"gmp-tl": ("mtl", "stage2")}.get(arm, (summary.get("final_stage", arm),))
            for stage in stages:
                name = "mtl" if stage == "mtl" and arm == "gmp-tl" else arm
                results.setdefault(name, []).append(summary["stages"][stage if stage in summary["stages"] else arm])
    write_summary(root, results, timings)


def _cell(row: dict, metric: str, kind: str) -> str:
    """``mean ± std`` in percent; the mean is always over folds (and seeds), the spread over ``kind``."""
    spread = row[f"{metric}_{kind}_std"]
    return "–" if spread is None else f"{100 * row[f'{metric}_folds_mean']:.1f} ± {100 * spread:.1f}"


def write_summary(root: Path, results: dict[str, list[dict]], timings: dict[str, list[float]]) -> None:
    lines = [
        "| arm | seeds | WAR over folds | UAR over folds | WAR over seeds | UAR over seeds | gender acc. "
        "| compute time per CV run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    table = {}
    for arm, runs in results.items():
        row = {"seeds": len(runs)}
        for metric in ("war", "uar"):
            row[f"{metric}_folds_mean"] = float(np.mean([r[f"{metric}_mean"] for r in runs]))
            row[f"{metric}_folds_std"] = float(np.mean([r[f"{metric}_std"] for r in runs]))
            seed_means = np.array([r[f"{metric}_mean"] for r in runs])
            row[f"{metric}_seeds_std"] = float(seed_means.std()) if len(runs) > 1 else None
        gender = [r["gender_accuracy_mean"] for r in runs if "gender_accuracy_mean" in r]
        row["gender_accuracy"] = float(np.mean(gender)) if gender else None
        source = "gmp-tl" if arm == "mtl" else arm
        row["compute_time_s"] = float(np.mean(timings.get(source, [float("nan")])))
        table[arm] = row

        seconds = row["compute_time_s"]
        duration = f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
        took = "(inside gmp-tl)" if arm == "mtl" else duration
        cells = [_cell(row, metric, kind) for kind in ("folds", "seeds") for metric in ("war", "uar")]
        gender = "–" if row["gender_accuracy"] is None else f"{100 * row['gender_accuracy']:.1f}"
        lines.append(f"| {arm} | {len(runs)} | " + " | ".join(cells) + f" | {gender} | {took} |")
    (root / "study_results.json").write_text(json.dumps(table, indent=2))
    (root / "study_results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
