"""Cross-validation driver: the whole chain on every fold, then per-fold and mean +- std tables.

Per fold ``k`` (``output_dir/fold<k>/``): MTL -> GMP extraction (k-means on that fold's training data
only) -> stage 1 -> stage 2, each step in its own folder and skipped when its results already exist;
an interrupted training step continues from its newest checkpoint and an interrupted extraction from
its last feature shard, so rerunning the command picks up where it stopped. ``chain="mtl"`` stops
after the MTL model and ``chain="plain"`` runs the plain fine-tuning baseline instead.

The config (YAML/JSON) has sections ``data``, ``model``, ``gmp``, ``training`` (shared
TrainingArguments) and per-stage overrides ``plain``, ``mtl``, ``stage1``, ``stage2`` (model or
training fields).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.figure import Figure
from tqdm.auto import tqdm
from transformers import TrainingArguments

from .arguments import (
    TRAINING_DEFAULTS,
    ConfigError,
    DataArguments,
    GMPArguments,
    ModelArguments,
    check_training_arguments,
    load_config_file,
    load_yaml,
    split_values,
)
from .baseline import baseline_scores
from .data.metrics import aggregate_folds
from .fold_data import load_data
from .model_setup import materialize_random_encoder
from .recipes.extract_gmp import extraction_settings, run_extract
from .recipes.finetune import run_finetune, step_settings
from .records import RecordMismatch, differences, read_record, run_lock, settings_defaults

logger = logging.getLogger(__name__)

CHAINS = {"plain": ("plain",), "mtl": ("mtl",), "gmp-tl": ("mtl", "extract", "stage1", "stage2")}
SECTIONS = ("data", "model", "gmp", "training", "plain", "mtl", "stage1", "stage2", "cv")


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``section.key=value`` strings (value parsed as YAML) on top of ``config``."""
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or section not in SECTIONS:
            raise ConfigError(f"--set takes section.key=value with a section in {SECTIONS}, got {item!r}")
        config.setdefault(section, {})[name] = load_yaml(value)
    return config


def _stage_arguments(config: dict, stage: str, fold: int, output_dir: Path, source: str | None):
    section = {**config.get("training", {}), **config.get(stage, {})}
    data_args = DataArguments(**{**config.get("data", {}), "fold": fold})
    model_values = {**config.get("model", {}), **split_values(section, ModelArguments)}
    if source is not None:
        model_values["model_name_or_path"] = source
        model_values.pop("encoder_preset", None)
    if stage == "stage1":
        model_values["gmp_dir"] = str(output_dir.parent / "gmp")
    # an unfinished step continues from its newest checkpoint (bit-exact), a new one starts afresh
    training_values = {
        **TRAINING_DEFAULTS,
        "resume_from_checkpoint": "last",
        **split_values(section, TrainingArguments),
    }
    unknown = set(section) - set(split_values(section, ModelArguments)) - set(split_values(section, TrainingArguments))
    if unknown:
        raise ConfigError(f"unknown keys in the training/{stage} sections: {sorted(unknown)}")
    training_args = TrainingArguments(output_dir=str(output_dir), **training_values)
    check_training_arguments(training_args)
    return data_args, ModelArguments(**model_values), training_args


def plan_fold(config: dict, fold: int, output_dir: Path, chain: str, init: str | None) -> list[tuple]:
    """The steps of one fold: (step, folder, arguments, settings that affect the step's result)."""
    fold_dir = output_dir / f"fold{fold}"
    steps = []
    for step in CHAINS[chain]:
        step_dir = fold_dir / ("gmp" if step == "extract" else step)
        if step == "extract":
            gmp_values = {
                **config.get("gmp", {}),
                "model_name_or_path": str(fold_dir / "mtl"),
                "output_dir": str(step_dir),
            }
            arguments = (GMPArguments(**gmp_values), DataArguments(**{**config.get("data", {}), "fold": fold}))
            settings = extraction_settings(*arguments)
        else:
            source = str(fold_dir / "stage1") if step == "stage2" else init
            arguments = _stage_arguments(config, step, fold, step_dir, source)
            settings = step_settings(step, *arguments)
        steps.append((step, step_dir, arguments, settings))
    return steps


def check_records(plans: dict[int, list[tuple]], overwrite: bool) -> None:
    """Compare every step folder's record with what this run would do, before any work.

    Without ``overwrite`` any difference stops the run with the folders named and nothing touched.
    With it, the steps that differ and every step after them in their fold are cleared, to be recomputed.
    """
    stale: list[Path] = []
    problems: list[str] = []
    for fold, steps in plans.items():
        for index, (_, step_dir, arguments, settings) in enumerate(steps):
            record = read_record(step_dir)
            if record is None:
                continue
            changed = differences(record["settings"], settings, settings_defaults(*arguments))
            if changed:
                problems.append(f"fold{fold}/{step_dir.name}: " + "; ".join(changed[:4]))
                stale.extend(later[1] for later in steps[index:])
                break
    if problems and not overwrite:
        raise RecordMismatch(
            f"{len(problems)} step folder(s) were made with other settings: " + " | ".join(problems[:4])
            + ". Nothing was changed; rerun with --overwrite to recompute them and the steps after them, "
            "or choose another --output_dir"
        )  # fmt: skip
    for step_dir in stale:
        if step_dir.exists():
            logger.info("%s was made with other settings; recomputing it", step_dir)
            shutil.rmtree(step_dir)


def run_fold(steps: list[tuple], fold: int, overwrite: bool) -> dict[str, Any]:
    """One fold of the chain; each step reuses its folder when the record matches, resumes it when
    unfinished, and otherwise computes it. Returns each stage's results."""
    results: dict[str, Any] = {}
    for step, step_dir, arguments, _ in steps:
        start = time.perf_counter()
        if step == "extract":
            gmp_args, data_args = arguments
            gmp_args.overwrite = overwrite
            results["gmp"] = run_extract(gmp_args, data_args)
            logger.info("fold %d extract: done in %.0f s (%s)", fold, time.perf_counter() - start, step_dir)
            continue
        results[step] = run_finetune(step, *arguments, overwrite=overwrite)
        test = results[step].get("test", {})
        scores = f"test WAR {100 * test['war']:.1f} UAR {100 * test['uar']:.1f}" if test else "no test fold"
        before = (results[step].get("emotion_head_refit") or {}).get("test_before_refit")
        if before is not None:
            scores += f" (trained head: UAR {100 * before['uar']:.1f})"
        if test.get("gender_accuracy") is not None:
            scores += f" gender {100 * test['gender_accuracy']:.1f}"
        logger.info("fold %d %s: %s, %.0f s (%s)", fold, step, scores, time.perf_counter() - start, step_dir)
    return results


def run_cv(
    config: dict,
    output_dir: str | Path,
    chain: str = "gmp-tl",
    folds: list[int] | None = None,
    overwrite: bool = False,
    baseline: bool = True,
) -> dict:
    """Run ``chain`` on ``folds`` (default: all) and write ``cv_results.{json,md}`` and ``confusion.png``;
    with ``baseline`` the tables also score :mod:`.baseline` on the same folds.

    Every step folder is compared with its record first; see :func:`check_records`.
    """
    if chain not in CHAINS:
        raise ValueError(f"chain must be one of {sorted(CHAINS)}, got {chain!r}")
    unknown = set(config) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"unknown config sections {sorted(unknown)}; expected {SECTIONS}")
    output_dir = Path(output_dir)
    with run_lock(output_dir):
        return _run_cv(config, output_dir, chain, folds, overwrite, baseline)


def _run_cv(
    config: dict, output_dir: Path, chain: str, folds: list[int] | None, overwrite: bool, baseline: bool
) -> dict:
    data_args = DataArguments(**config.get("data", {}))
    dataset = load_data(data_args)
    all_folds = sorted(set(dataset["fold"]))
    folds = all_folds if folds is None else folds
    missing = sorted(set(folds) - set(all_folds))
    if missing:
        raise ValueError(f"folds {missing} do not exist; this protocol has folds {all_folds}")
    preset = config.get("model", {}).get("encoder_preset")
    seed = config.get("training", {}).get("seed", 42)
    init_dir = output_dir / "random_init"
    init = str(init_dir) if preset else None
    plans = {fold: plan_fold(config, fold, output_dir, chain, init) for fold in folds}
    check_records(plans, overwrite)
    if preset:
        materialize_random_encoder(preset, init_dir, seed, config.get("model", {}).get("encoder_family", "hubert"))
    (output_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    start = time.perf_counter()
    per_fold = {}
    for fold in tqdm(folds, desc="folds", disable=len(folds) < 2):
        per_fold[fold] = run_fold(plans[fold], fold, overwrite)
    stages = [s for s in ("plain", "mtl", "stage1", "stage2") if all(s in r for r in per_fold.values())]
    summary: dict[str, Any] = {
        "chain": chain,
        "folds": folds,
        "stages": {
            stage: {
                "per_fold": {
                    f: {k: r[stage]["test"].get(k) for k in ("war", "uar", "macro_f1", "gender_accuracy")}
                    for f, r in per_fold.items()
                },
                **aggregate_folds([r[stage]["test"] for r in per_fold.values()]),
            }
            for stage in stages
        },
        "final_stage": CHAINS[chain][-1],
        "wall_time_s": time.perf_counter() - start,  # this invocation only: finished steps are reused
        "compute_time_s": sum(recorded_compute_time(r) for r in per_fold.values()),
    }
    if baseline:
        summary["baseline"] = baseline_scores(dataset, folds)  # fitted anew each time: seconds, deterministic
    (output_dir / "cv_results.json").write_text(json.dumps(summary, indent=2))
    (output_dir / "cv_results.md").write_text(results_markdown(summary))
    plot_confusion(summary["stages"][summary["final_stage"]], output_dir / "confusion.png")
    return summary


def recorded_compute_time(fold_results: dict[str, Any]) -> float:
    """Seconds of training (Trainer ``train_runtime``) and GMP extraction recorded by a fold's steps;
    unlike wall time, it survives resuming, since every step stores its own."""
    total = 0.0
    for step, result in fold_results.items():
        if step == "gmp":
            total += sum(v for k, v in result.get("timings", {}).items() if k.endswith("_s"))
        else:
            total += result.get("train_runtime") or 0.0
    return total


def results_markdown(summary: dict) -> str:
    """Per-fold and mean +- std WAR/UAR of every stage (and the gender head's accuracy), in percent, then the
    hand-made-features baseline on the same folds."""
    folds = summary["folds"]
    lines = [
        "| stage | " + " | ".join(f"fold {f}" for f in folds) + " | WAR mean ± std | UAR mean ± std | gender acc. |"
    ]
    lines.append("|---" * (len(folds) + 4) + "|")
    rows = dict(summary["stages"])
    if "baseline" in summary:  # cv_results.json written before the baseline was added has none
        rows[f"{summary['baseline']['name']} (baseline)"] = summary["baseline"]
    for stage, scores in rows.items():
        cells = [f"{100 * scores['per_fold'][f]['war']:.1f} / {100 * scores['per_fold'][f]['uar']:.1f}" for f in folds]
        war = f"{100 * scores['war_mean']:.1f} ± {100 * scores['war_std']:.1f}"
        uar = f"{100 * scores['uar_mean']:.1f} ± {100 * scores['uar_std']:.1f}"
        gender = "–"
        if "gender_accuracy_mean" in scores:
            gender = f"{100 * scores['gender_accuracy_mean']:.1f} ± {100 * scores['gender_accuracy_std']:.1f}"
        lines.append(f"| {stage} | " + " | ".join(cells) + f" | {war} | {uar} | {gender} |")
    return (
        "Test-fold WAR / UAR (%) per fold; gender accuracy of the gender head on the test folds. The baseline is\n"
        "logistic regression on clip statistics of log-mel/MFCC frames, fitted on every clip outside the test fold.\n\n"
        + "\n".join(lines)
        + "\n"
    )


def plot_confusion(scores: dict, path: Path) -> None:
    """The pooled (all folds) confusion matrix, row-normalised, as a PNG (matplotlib's object API: no
    pyplot state, no backend to select)."""
    matrix = np.asarray(scores["pooled_confusion_matrix"], dtype=float)
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    labels = scores["labels"]
    figure = Figure(figsize=(1.2 * len(labels) + 2, 1.2 * len(labels) + 1.5))
    axis = figure.add_subplot()
    axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("reference")
    for i in range(len(labels)):
        for j in range(len(labels)):
            axis.text(j, i, f"{normalised[i, j]:.2f}\n({int(matrix[i, j])})", ha="center", va="center", fontsize=8,
                      color="white" if normalised[i, j] > 0.5 else "black")  # fmt: skip
    axis.set_title(f"pooled confusion, WAR {100 * scores['pooled_war']:.1f} / UAR {100 * scores['pooled_uar']:.1f}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="gmp-tl cv", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="YAML/JSON config with the sections above")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--chain", choices=sorted(CHAINS), default=None, help="default: cv.chain or gmp-tl")
    parser.add_argument("--folds", type=int, nargs="+", default=None, help="default: cv.folds or all")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument(
        "--overwrite", action="store_true", help="recompute the steps whose folders were made with other settings"
    )
    args = parser.parse_args(argv)
    config = apply_overrides(load_config_file(args.config), args.overrides)
    cv_section = config.pop("cv", {})
    chain, folds = args.chain or cv_section.get("chain", "gmp-tl"), args.folds or cv_section.get("folds")
    summary = run_cv(config, args.output_dir, chain, folds, overwrite=args.overwrite)
    print(results_markdown(summary))
    print(
        f"results: {Path(args.output_dir) / 'cv_results.md'}; "
        f"confusion matrix: {Path(args.output_dir) / 'confusion.png'}"
    )
    return summary
