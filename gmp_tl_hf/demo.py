"""``gmp-tl demo``: the whole GMP-TL chain end to end, offline, in a few minutes on a laptop CPU.

By default it synthesises a small emotional-speech corpus (8 speakers, 4 emotions), trains a tiny
randomly initialised HuBERT through MTL -> GMP extraction -> stage 1 -> stage 2 on one
speaker-independent fold, prints the WAR/UAR table, and classifies a few test clips with the saved
model through ``pipeline("audio-classification")``. ``--dataset emodb --data_dir ...`` (small
from-scratch encoder) or ``--dataset iemocap --data_dir ... --model facebook/hubert-base-ls960``
run the same chain on real data (all folds unless ``--folds`` is given).
"""

from __future__ import annotations

import argparse
import copy
import logging
import time
from pathlib import Path
from typing import Any

from transformers import pipeline

from .arguments import DataArguments
from .cross_validation import apply_overrides, results_markdown, run_cv
from .fold_data import load_data

logger = logging.getLogger(__name__)

DEMO_CONFIGS: dict[str, dict[str, Any]] = {
    "synthetic": {
        "data": {"dataset": "synthetic", "fold_protocol": "speakers-4", "max_duration": 3.0},
        "model": {"encoder_preset": "tiny", "freeze_feature_encoder": False, "layerdrop": 0.0},
        "gmp": {"cluster_sizes": [10, 25, 50]},
        "training": {
            "per_device_train_batch_size": 8,
            "learning_rate": 1e-3,
            "num_train_epochs": 15,
            "logging_steps": 25,
            "seed": 42,
        },
        "stage2": {"num_train_epochs": 3, "learning_rate": 3e-4},
    },
    "emodb": {
        "data": {"dataset": "emodb", "fold_protocol": "speakers-5", "max_duration": 4.0},
        "model": {"encoder_preset": "small", "freeze_feature_encoder": False, "layerdrop": 0.0},
        "gmp": {"cluster_sizes": [50, 100, 500]},
        "training": {"per_device_train_batch_size": 8, "learning_rate": 5e-4, "num_train_epochs": 15, "seed": 42},
        "stage2": {"num_train_epochs": 5, "learning_rate": 1e-4},
    },
    "iemocap": {
        "data": {"dataset": "iemocap", "fold_protocol": "loso", "max_duration": 8.0},
        "model": {"model_name_or_path": "facebook/hubert-base-ls960"},
        "gmp": {"cluster_sizes": [50, 100, 500]},
        "training": {"per_device_train_batch_size": 8, "learning_rate": 5e-5, "num_train_epochs": 20, "seed": 42},
        "stage2": {"num_train_epochs": 10, "learning_rate": 1e-5},
    },
}


def demo_config(dataset: str, data_dir: str | None, model: str | None) -> dict[str, Any]:
    if dataset not in DEMO_CONFIGS:
        raise ValueError(f"the demo knows {sorted(DEMO_CONFIGS)}; use `gmp-tl cv --config` for other corpora")
    config = copy.deepcopy(DEMO_CONFIGS[dataset])
    if data_dir:
        config["data"]["data_dir"] = data_dir
    elif dataset != "synthetic":
        raise ValueError(f"--data_dir is needed for --dataset {dataset}")
    if model:
        config["model"] = {"model_name_or_path": model}
    return config


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="gmp-tl demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="synthetic", choices=sorted(DEMO_CONFIGS))
    parser.add_argument("--data_dir", default=None)
    parser.add_argument(
        "--model", default=None, help="pre-trained HuBERT (default: a random encoder of the demo's size)"
    )
    parser.add_argument("--output_dir", default="runs/demo")
    parser.add_argument("--folds", type=int, nargs="+", default=None, help="default: 0 for synthetic, all otherwise")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    config = apply_overrides(demo_config(args.dataset, args.data_dir, args.model), args.overrides)
    folds = args.folds if args.folds is not None else ([0] if args.dataset == "synthetic" else None)
    print(f"GMP-TL demo on {args.dataset}: MTL -> GMP extraction -> stage 1 -> stage 2 (output: {args.output_dir})")
    summary = run_cv(config, args.output_dir, "gmp-tl", folds)
    output_dir = Path(args.output_dir)
    final = output_dir / f"fold{summary['folds'][0]}" / "stage2"
    print()
    print(results_markdown(summary))
    print(f"wall time: {time.perf_counter() - start:.0f} s")
    print(f"report:  {output_dir / 'cv_results.md'} (+ cv_results.json, confusion.png)")
    print(f"model:   {final} (loads with AutoModelForAudioClassification / pipeline, trust_remote_code=True)")

    classifier = pipeline("audio-classification", model=str(final), trust_remote_code=True)
    dataset = load_data(DataArguments(**config["data"]))
    test_rows = (
        dataset.filter(lambda fold: fold == summary["folds"][0], input_columns="fold").shuffle(seed=0).select(range(4))
    )
    names = dataset.features["emotion"].names
    print("\npipeline('audio-classification') on held-out clips:")
    for row in test_rows:
        result = classifier(row["audio"]["path"], top_k=1, return_gender=True)
        emotion, gender = result["emotion"][0], result["gender"][0]
        print(f"  {Path(row['audio']['path']).name}: true {names[row['emotion']]:8s} -> {emotion['label']:8s} "
              f"({emotion['score']:.2f}), gender {gender['label']} ({gender['score']:.2f})")  # fmt: skip
    return summary
