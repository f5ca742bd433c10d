"""What each half of the gender head's input is worth: a paired check on a finished cross-validation run.

The recipes' gender head reads encoder statistics and (``gender_spectral_features``) log-mel/MFCC statistics,
refit by logistic regression at the end of every stage. For every fold and stage of RUN_DIR this refits the
same regression (standardised features, C = 1, the clips the run's refit used: training speakers before
2026-12-07, training + validation speakers since) on the encoder part only, the spectral part only and both,
and scores each on the fold's test speakers; "both" must reproduce the accuracy the run recorded. The other
protocol's "both" is added ("both_with_validation" for a run refit on training speakers only, "both_train_only"
for one refit on both), and "validation_pick" is the test accuracy of the half that, fitted on the training
speakers, scores best on the validation speakers. "speaker_cv_c" is "both" fitted on training + validation
speakers with the regression's C chosen by leave-one-speaker-out accuracy there (from C_GRID), and
"speaker_cv_pick" the same with the half (encoder, spectral, both) chosen too: refit rules measured to see
whether one would help.
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
from gmp_tl_hf.model_setup import (
    fit_gender_regression,
    gender_head_inputs,
    gender_rows,
    load_feature_extractor,
    load_gmp_model,
)

STAGES = ("mtl", "stage1", "stage2", "plain")
C_GRID = (0.01, 0.1, 1.0, 10.0)


def refit_accuracy(
    train: np.ndarray, train_genders: np.ndarray, test: np.ndarray, test_genders: np.ndarray, c: float = 1.0
) -> float:
    """The recipes' refit regression (with ``C = c``), scored on the test clips."""
    classifier, mean, scale = fit_gender_regression(train, train_genders, c)
    return float(classifier.score((test - mean) / scale, test_genders))


def leave_one_speaker_out(features: np.ndarray, genders: np.ndarray, speakers: np.ndarray, c: float) -> float:
    """Accuracy of the refit regression (with ``C = c``) on each speaker when fitted on all the others."""
    correct = 0
    for speaker in np.unique(speakers):
        held = speakers == speaker
        accuracy = refit_accuracy(features[~held], genders[~held], features[held], genders[held], c)
        correct += round(accuracy * held.sum())  # a count of clips, as before: ties stay ties
    return correct / len(genders)


def speaker_cv_rules(
    features: np.ndarray,
    genders: np.ndarray,
    speakers: np.ndarray,
    test: np.ndarray,
    test_genders: np.ndarray,
    parts: dict[str, slice],
) -> tuple[dict[str, float], str]:
    """Test accuracy of the two leave-one-speaker-out rules ("speaker_cv_c", "speaker_cv_pick") and what they
    chose; none where leaving a speaker out leaves one gender (too few speakers to choose by)."""
    if any(len(set(genders[speakers != speaker])) < 2 for speaker in set(speakers)):
        return {}, "too few speakers of a gender for leave-one-speaker-out"
    held_out = {(part, c): leave_one_speaker_out(features[:, cols], genders, speakers, c)
                for part, cols in parts.items() for c in C_GRID}  # fmt: skip
    c = max(C_GRID, key=lambda c: (held_out["both", c], -c))  # the smaller C on ties
    order = {"both": 0, "spectral": 1, "encoder": 2}  # ties: the fuller input, then the smaller C
    part, c_pick = max(held_out, key=lambda key: (held_out[key], -order[key[0]], -key[1]))
    cols = parts[part]
    rules = {
        "speaker_cv_c": refit_accuracy(features, genders, test, test_genders, c),
        "speaker_cv_pick": refit_accuracy(features[:, cols], genders, test[:, cols], test_genders, c_pick),
    }
    return rules, f"C = {c}; pick {part}, C = {c_pick}"


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
            outside = [name for name in names if name != "test"]  # the current recipe's refit clips
            features, genders = (np.concatenate([inputs[name][i] for name in outside]) for i in (0, 1))
            speakers = np.concatenate([gender_rows(splits[name])["speaker"] for name in outside])
            rules, chosen = speaker_cv_rules(features, genders, speakers, test, test_genders, parts)
            row.update(rules)
            row["recorded"] = recorded["test"]["gender_accuracy"]
            results.setdefault(stage, {})[fold] = row
            print(f"fold {fold} {stage}: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in row.items()) + f" ({chosen})")
    (args.run_dir / "gender_parts.json").write_text(json.dumps(results, indent=2))
    folds = sorted({fold for rows in results.values() for fold in rows})
    print("\n| model | gender input | " + " | ".join(f"f{fold}" for fold in folds) + " | mean |")
    print("|---|---|" + "---|" * (len(folds) + 1))
    for stage, rows in results.items():
        parts = (
            "encoder",
            "spectral",
            "both",
            "both_train_only",
            "both_with_validation",
            "validation_pick",
            "speaker_cv_c",
            "speaker_cv_pick",
        )
        for part in parts:
            values = [100 * rows[fold][part] if part in rows.get(fold, {}) else None for fold in folds]
            if all(value is None for value in values):
                continue
            cells = " | ".join("–" if value is None else f"{value:.1f}" for value in values)
            mean = np.mean([value for value in values if value is not None])
            print(f"| {stage} | {part} | {cells} | {mean:.1f} |")
    return results


if __name__ == "__main__":
    main()
