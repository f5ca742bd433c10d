"""What each half of the gender head's input is worth: a paired check on a finished cross-validation run.

The recipes' gender head reads encoder statistics and (``gender_spectral_features``) log-mel/MFCC statistics,
refit by logistic regression at the end of every stage. For every fold and stage of RUN_DIR this refits the
same regression (standardised features, C = 1, the clips the run's refit used: training speakers before
2026-12-07, training + validation speakers since) on the encoder part only, the spectral part only and both,
and scores each on the fold's test speakers; "both" must reproduce the accuracy the run recorded. The other
protocol's "both" is added ("both_with_validation" for a run refit on training speakers only, "both_train_only"
for one refit on both), and "validation_pick" is the test accuracy of the half that, fitted on the training
speakers, scores best on the validation speakers: refit rules measured to see whether one would help.
Writes ``gender_parts.json`` into RUN_DIR and prints a Markdown table.

    python recipes/studies/gender_parts.py runs/gender-emodb
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

from gmp_tl_hf.arguments import DataArguments
from gmp_tl_hf.data.collator import SERCollator
from gmp_tl_hf.fold_data import prepare_splits
from gmp_tl_hf.model_setup import fit_gender_regression, gender_head_inputs, load_feature_extractor, load_gmp_model

STAGES = ("mtl", "stage1", "stage2", "plain")


def refit_accuracy(train: np.ndarray, train_genders: np.ndarray, test: np.ndarray, test_genders: np.ndarray) -> float:
    """The recipes' refit regression, scored on the test clips."""
    classifier, mean, scale = fit_gender_regression(train, train_genders)
    return float(classifier.score((test - mean) / scale, test_genders))


def main(argv: list[str] | None = None) -> dict[str, dict[int, dict[str, float]]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    data = yaml.safe_load((args.run_dir / "config.yaml").read_text())["data"]
    results: dict[str, dict[int, dict[str, float]]] = {}
    for fold_dir in sorted(args.run_dir.glob("fold*"), key=lambda path: int(path.name[4:])):
        fold = int(fold_dir.name[4:])
        splits = prepare_splits(DataArguments(**data, fold=fold))
        for stage in STAGES:
            path = fold_dir / stage
            if not (path / "results.json").is_file():
                continue
            model = load_gmp_model(str(path)).eval()
            if not model.config.gender_spectral_features:
                raise SystemExit(f"{path}: its gender head reads no spectral features (gender_spectral_features)")
            collator = SERCollator(load_feature_extractor(str(path)), model.config)
            recorded = json.loads((path / "results.json").read_text())
            refit_splits = (recorded.get("gender_head_refit") or {}).get("splits", ["train"])
            names = [name for name in ("train", "validation", "test") if name in splits]
            inputs = {name: gender_head_inputs(model, splits[name], collator) for name in names}
            fit = [np.concatenate([inputs[name][i] for name in refit_splits]) for i in (0, 1)]
            test, test_genders = inputs["test"]
            encoder = model.gender_classifier.in_features
            parts = {"encoder": slice(0, encoder), "spectral": slice(encoder, None), "both": slice(None)}
            row = {name: refit_accuracy(fit[0][:, cols], fit[1], test[:, cols], test_genders)
                   for name, cols in parts.items()}  # fmt: skip
            if "validation" in inputs:
                (train, train_genders), (held, held_genders) = inputs["train"], inputs["validation"]
                if "validation" in refit_splits:
                    row["both_train_only"] = refit_accuracy(train, train_genders, test, test_genders)
                else:
                    every = np.concatenate([train, held]), np.concatenate([train_genders, held_genders])
                    row["both_with_validation"] = refit_accuracy(*every, test, test_genders)
                scores = {name: refit_accuracy(train[:, cols], train_genders, held[:, cols], held_genders)
                          for name, cols in parts.items()}  # fmt: skip
                pick = max(("both", "spectral", "encoder"), key=scores.__getitem__)
                row["validation_pick"] = refit_accuracy(train[:, parts[pick]], train_genders, test[:, parts[pick]],
                                                        test_genders)  # fmt: skip
            row["recorded"] = recorded["test"]["gender_accuracy"]
            results.setdefault(stage, {})[fold] = row
            print(f"fold {fold} {stage}: " + ", ".join(f"{name} {100 * value:.1f}" for name, value in row.items()))
    (args.run_dir / "gender_parts.json").write_text(json.dumps(results, indent=2))
    folds = sorted({fold for rows in results.values() for fold in rows})
    print("\n| model | gender input | " + " | ".join(f"f{fold}" for fold in folds) + " | mean |")
    print("|---|---|" + "---|" * (len(folds) + 1))
    for stage, rows in results.items():
        for part in ("encoder", "spectral", "both", "both_train_only", "both_with_validation", "validation_pick"):
            values = [100 * rows[fold][part] if part in rows.get(fold, {}) else None for fold in folds]
            if all(value is None for value in values):
                continue
            cells = " | ".join("–" if value is None else f"{value:.1f}" for value in values)
            mean = np.mean([value for value in values if value is not None])
            print(f"| {stage} | {part} | {cells} | {mean:.1f} |")
    return results


if __name__ == "__main__":
    main()
