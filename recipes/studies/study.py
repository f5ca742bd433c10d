"""The from-scratch study on one corpus: what each part of GMP-TL is worth, against plain fine-tuning and
a hand-made-features baseline, on speaker-independent folds. One command per corpus, resumable:

    python recipes/studies/study.py --corpus emodb --output_dir runs/study            # 5 folds
    python recipes/studies/study.py --corpus ravdess12 --output_dir runs/study        # 6 folds
    python recipes/studies/study.py --corpus emodb --arms mfcc plain-compute gmp-tl --seeds 1

Arms (same folds, seeds and per-stage epochs; configs recipes/configs/<corpus>_small_scratch.yaml):
    mfcc            log-mel/MFCC statistics + logistic regression (scikit-learn), emotion and gender
    plain-compute   plain fine-tuning (utterance CE) for MTL + stage-1 + stage-2 epochs: equal total compute
    plain-epochs    plain fine-tuning for stage-1 + stage-2 epochs: as many epochs as the final GMP-TL
                    model trains (stage 1 restarts from the initial encoder, as the method says)
    gmp-tl          MTL -> GMPs -> stage 1 -> stage 2 (AM-Softmax, head from stage 1); also gives the MTL and
                    stage-1 rows (mtl, stage1)
    no-gender       gmp-tl with gender_loss_weight 0 in the MTL model (no gender in the GMP features)
    single-scale    gmp-tl with one GMP scale (K = 100); reuses the MTL models of gmp-tl (same seed)
    linear-stage2   gmp-tl with a linear stage-2 head; reuses MTL, GMPs and stage 1 of gmp-tl (same seed)
    fresh-stage2    gmp-tl with a freshly drawn AM-Softmax head in stage 2; reuses the same three

With --pretrained CONFIG (a pre-training config, e.g. recipes/configs/pretrain_small_ravdess12.yaml for
--corpus emodb) the encoder is first pre-trained with it (once, under <output_dir>/pretrain/<config name>) and
every neural arm starts from that encoder instead of the random one; results go to
<output_dir>/<corpus>/<classes>/from-<config name>/ and the archive's from-<config name>/ folder. A
task-adaptive config (``audio: training_folds``, e.g. recipes/configs/pretrain_small_adaptive.yaml) pre-trains
one encoder per fold instead, on that fold's training audio of the study's corpus (never its test speakers),
under <output_dir>/pretrain/<config name>-<corpus>-<classes>-fold<k>; each fold's arms start from its own
encoder. An encoder is pre-trained only when a fold that needs it is not archived yet. Arms run as separate
jobs share the encoder: a job that finds another one pre-training it (its folder locked) waits and reuses it.

With --set SECTION.KEY=VALUE (repeatable, as for ``gmp-tl cv``) the config is changed before anything runs,
e.g. ``--set model.freeze_feature_encoder=true`` to fine-tune a pre-trained encoder with its conv layers fixed;
results and archive go one folder deeper, named after the changes (``set-model.freeze_feature_encoder=true``),
so a variant never meets the unchanged config's archive.

Reused folders are copied; their records match by content. An interrupted study resumes: finished
steps are reused, unfinished ones continue. Writes <output_dir>/<corpus>/<classes>/study_results.{md,json}
for the arms, seeds and folds asked: mean +- std over folds (averaged over seeds), the spread of the seed
means, the gender head's accuracy, the compute each arm recorded, in how many fold-seeds GMP-TL beats
each plain arm (with a two-sided sign test's p-value), and each ablation against gmp-tl on the same seeds
and folds, model by model (no-gender trains its own MTL model and stage 1, single-scale its own stage 1:
rows ``no-gender mtl`` etc.). The archive's own study_results.{md,json} is rewritten from the archive
alone, whatever was asked: every arm and seed with an archived fold, over all folds (arms with folds
missing are marked unfinished), so a run of one arm or fold never replaces the table of the others.

Every finished fold of an arm and seed is also archived as a small JSON file (its settings, the code
version that made it, its test scores and compute) under --archive, by default
recipes/studies/results/<corpus>/<classes>/, which is committed: a study spread over several machines or
sessions resumes fold by fold from the archive (run folders with checkpoints are not needed), and every
number of the README's study tables can be traced to the file and commit that produced it. An archived
fold is reused only when its settings equal the ones asked for now; otherwise the study stops and names
the differing keys (delete the file, or archive elsewhere, to recompute).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from gmp_tl_hf.arguments import TRAINING_DEFAULTS, ConfigError, DataArguments, load_config_file
from gmp_tl_hf.baseline import baseline_scores
from gmp_tl_hf.cli import setup_logging, stop
from gmp_tl_hf.cross_validation import apply_overrides, run_cv
from gmp_tl_hf.data.metrics import aggregate_folds
from gmp_tl_hf.fold_data import load_data
from gmp_tl_hf.recipes import pretrain
from gmp_tl_hf.records import RecordMismatch, RunLocked, code_version, differences

logger = logging.getLogger("gmp_tl_hf.study")
REPO = Path(__file__).resolve().parents[2]
CORPORA = {  # corpus -> (config, default data folder)
    "emodb": ("emodb_small_scratch.yaml", REPO.parent / "shared" / "data" / "emodb"),
    "ravdess12": ("ravdess12_small_scratch.yaml", REPO.parent / "shared" / "data" / "ravdess12"),
}
ARMS = (
    "mfcc", "plain-compute", "plain-epochs", "gmp-tl", "no-gender", "single-scale", "linear-stage2", "fresh-stage2",
)  # fmt: skip
REUSE = {"single-scale": ("mtl",), **{arm: ("mtl", "gmp", "stage1") for arm in ("linear-stage2", "fresh-stage2")}}
OWN_STAGES = {"gmp-tl": ("mtl", "stage1", "stage2"), "no-gender": ("mtl", "stage1", "stage2"),
              "single-scale": ("stage1", "stage2")}  # fmt: skip  # the stages a chain arm trains itself, not reused
FINE_TUNING_ONLY = ("max_duration", "validation", "validation_size")  # data keys pre-training does not take
CHANGES = {
    "no-gender": ("mtl", "gender_loss_weight", 0.0),
    "single-scale": ("gmp", "cluster_sizes", [100]),
    "linear-stage2": ("stage2", "emotion_head", "linear"),
    "fresh-stage2": ("stage2", "head_init", "fresh"),
}


def stage_epochs(config: dict, stage: str) -> float:
    default = config["training"].get("num_train_epochs", TRAINING_DEFAULTS["num_train_epochs"])
    return config.get(stage, {}).get("num_train_epochs", default)


def arm_config(base: dict, arm: str, seed: int, data_dir: str, classes: str) -> tuple[dict, str]:
    """The CV config and chain of one arm and seed."""
    config = json.loads(json.dumps(base))
    config["data"].update(data_dir=data_dir, classes=classes)
    config["training"]["seed"] = seed
    if arm.startswith("plain"):
        final = stage_epochs(base, "stage1") + stage_epochs(base, "stage2")
        epochs = final + stage_epochs(base, "mtl") if arm == "plain-compute" else final
        config["plain"] = {**config.get("plain", {}), "num_train_epochs": epochs}
        return config, "plain"
    if arm in CHANGES:
        section, key, value = CHANGES[arm]
        config.setdefault(section, {})[key] = value
    return config, "gmp-tl"


def run_mfcc(config: dict, output_dir: Path) -> dict:
    """The classic reference on the same folds (:mod:`gmp_tl_hf.baseline`: statistics of hand-made features +
    logistic regression), for emotion and (the baseline beside the models' gender heads) for gender."""
    start = time.perf_counter()
    scores = baseline_scores(load_data(DataArguments(**config["data"])))
    scores.pop("name")
    summary = {"stages": {"mfcc": scores}, "compute_time_s": time.perf_counter() - start}
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "cv_results.json").write_text(json.dumps(summary, indent=2))
    return summary


def archived_settings(config: dict, chain: str, corpus: str, encoder: dict | None = None) -> tuple[dict, dict]:
    """What an archived fold is compared on: the arm's config and chain, with the corpus named instead of
    the machine's path to it, and a pre-trained ``encoder`` by its record (settings and inputs); and the
    defaults that stand for encoder settings an older archive lacks (an option added since)."""
    settings = json.loads(json.dumps(config))
    settings["data"]["data_dir"] = corpus
    defaults: dict = {}
    if encoder is not None:
        encoder = json.loads(json.dumps(encoder))
        defaults = {"config": {"model": {"model_name_or_path": {"settings": encoder.pop("defaults")}}}}
        corpus_of_encoder = encoder["settings"]["DataArguments"]
        corpus_of_encoder["data_dir"] = corpus_of_encoder["dataset"]  # the corpus, not this machine's path to it
        settings["model"]["model_name_or_path"] = encoder
    return {"chain": chain, "config": settings}, defaults


def pretrained_encoder(
    config_path: Path, output_dir: Path, train: bool = True, fold_data: dict | None = None
) -> tuple[Path, dict]:
    """Pre-train with ``config_path`` once (resumable, refused on other settings like any step); its folder
    and record. ``train=False``: only the record it would have (to read the archive without training).
    ``fold_data``: the data arguments of one fold of the study's corpus, for a task-adaptive config."""
    name = config_path.stem
    argv = ["--config", str(config_path), "--resume_from_checkpoint", "last"]
    if fold_data is not None:
        name += f"-{fold_data['dataset']}-{fold_data['classes']}-fold{fold_data['fold']}"
        argv += [item for key, value in fold_data.items() if value is not None for item in (f"--{key}", str(value))]
    directory = output_dir / "pretrain" / name
    argv += ["--output_dir", str(directory)]
    if train:
        pretrain_when_free(argv)
    return directory, pretrain.expected_record(argv)


def pretrain_when_free(argv: list[str], poll_seconds: float = 10.0) -> None:
    """Pre-train (or reuse) an encoder, waiting while another job holds its folder: arms run as parallel jobs
    share one encoder, and the job that comes second reuses what the first one makes (or finds made)."""
    waiting = False
    while True:
        try:
            pretrain.main(argv)
            return
        except RunLocked as locked:
            if not waiting:
                logger.info("%s; this job waits for it (checking every %g s)", locked, poll_seconds)
                waiting = True
            time.sleep(poll_seconds)


def is_task_adaptive(config_path: Path) -> bool:
    """A pre-training config on the training folds' audio: one encoder per fold of the study's corpus."""
    return load_config_file(config_path).get("audio") == "training_folds"


def encoder_groups(
    args: argparse.Namespace, base: dict, data_dir: str, folds: list[int], root: Path, archive: Path, train: bool
) -> Iterator[tuple[list[int], Path, dict, dict | None]]:
    """(folds, run root, config, encoder record) for each encoder an arm starts from: the random one, the
    one pre-trained with ``--pretrained``, or (task-adaptive) one pre-trained on each fold's training audio.
    An encoder is pre-trained only when ``train`` and one of its folds is not archived yet."""
    if not args.pretrained:
        yield folds, root, base, None
        return
    pretraining = Path(args.pretrained)
    groups = [(None, folds, root)]
    if is_task_adaptive(pretraining):
        groups = [(fold, [fold], root / f"fold{fold}") for fold in folds]
    for fold, group, group_root in groups:
        fold_data = None
        if fold is not None:  # the study's corpus and protocol, this fold's training audio (validation speakers too)
            fold_data = {key: value for key, value in base["data"].items() if key not in FINE_TUNING_ONLY}
            fold_data.update(data_dir=data_dir, classes=args.classes, fold=fold)
        needed = train and any(not (archive / f"fold{k}.json").is_file() for k in group)
        directory, encoder = pretrained_encoder(pretraining, Path(args.output_dir), needed, fold_data)
        model = {key: value for key, value in base["model"].items() if key != "encoder_preset"}
        yield group, group_root, {**base, "model": {**model, "model_name_or_path": str(directory.resolve())}}, encoder


def archived_fold(path: Path, settings: dict, defaults: dict | None = None) -> dict | None:
    """The archived one-fold summary at ``path`` if it was made with ``settings``; None if absent."""
    if not path.is_file():
        return None
    entry = json.loads(path.read_text())
    changed = differences(entry["settings"], settings, defaults)
    if changed:
        raise RecordMismatch(
            f"{path} was made with other settings ({', '.join(changed[:6])}); delete it to recompute, "
            "or pass another --archive"
        )
    return entry["summary"]


def archive_fold(path: Path, settings: dict, summary: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"settings": settings, "code": code_version(), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
             "summary": summary}  # fmt: skip
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(entry, indent=2))
    temporary.replace(path)  # complete or absent


def merge_folds(summaries: list[dict]) -> dict:
    """One CV summary from one-fold summaries (the same shape ``run_cv`` returns for all folds)."""
    merged: dict = {"final_stage": summaries[0]["final_stage"], "stages": {},
                    "compute_time_s": sum(s["compute_time_s"] for s in summaries)}  # fmt: skip
    for stage in summaries[0]["stages"]:
        folds = [(fold, s["stages"][stage]) for s in summaries for fold in s["stages"][stage]["per_fold"]]
        scores = [{**one["per_fold"][fold], "confusion_matrix": one["pooled_confusion_matrix"],
                   "labels": one["labels"]} for fold, one in folds]  # fmt: skip
        merged["stages"][stage] = {"per_fold": {int(fold): one["per_fold"][fold] for fold, one in folds},
                                   **aggregate_folds(scores)}  # fmt: skip
    return merged


def run_arm(
    config: dict,
    chain: str,
    corpus: str,
    run_dir: Path,
    archive: Path,
    folds: list[int],
    encoder: dict | None,
    train: bool = True,
) -> list[dict]:
    """The one-fold summaries of ``folds`` of one arm and seed, each taken from the archive when it is there
    (and otherwise trained, or with ``train=False`` a missing one is an error)."""
    settings, defaults = archived_settings(config, chain, corpus, encoder)
    summaries = []
    for fold in folds:
        path = archive / f"fold{fold}.json"
        summary = archived_fold(path, settings, defaults)
        if summary is None:
            if not train:
                raise FileNotFoundError(f"{path}: not archived")
            summary = run_cv(config, run_dir, chain, [fold], baseline=False)  # the mfcc arm is the baseline
            archive_fold(path, settings, summary)
        else:
            logger.log(logging.INFO if train else logging.DEBUG, "%s fold %d: archived result reused (%s)",
                       run_dir, fold, path)  # fmt: skip
        summaries.append(summary)
    return summaries


def copy_reused_steps(root: Path, arm: str, seed: int, run_dir: Path) -> None:
    """The upstream steps an ablation shares with gmp-tl (same seed), copied once."""
    for step in REUSE.get(arm, ()):
        for source in sorted((root / "gmp-tl" / f"seed{seed}").glob(f"fold*/{step}")):
            target = run_dir / source.parent.name / step
            if not target.exists():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns(".lock"))
    source = root / "gmp-tl" / f"seed{seed}" / "random_init"
    if REUSE.get(arm) and source.is_dir() and not (run_dir / "random_init").exists():
        shutil.copytree(source, run_dir / "random_init")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=sorted(CORPORA), required=True)
    parser.add_argument("--data_dir", default=None, help="default: the corpus in ../shared/data")
    parser.add_argument("--config", default=None, help="default: recipes/configs/<corpus>_small_scratch.yaml")
    parser.add_argument("--output_dir", default="runs/study")
    parser.add_argument("--classes", choices=["native", "iemocap4"], default="native")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds of mfcc, plain and gmp-tl")
    parser.add_argument("--ablation_seeds", type=int, nargs="+", default=None, help="default: the first seed")
    parser.add_argument("--folds", type=int, nargs="+", default=None, help="default: all (a subset for a quick look)")
    parser.add_argument("--archive", default=None, help="default: recipes/studies/results/<corpus>/<classes>")
    parser.add_argument("--pretrained", default=None, help="a pre-training config: start every arm from its encoder")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="change one value of the config (VALUE as YAML), e.g. model.freeze_feature_encoder=true; the results "
        "go to a folder named after the changes",
    )  # fmt: skip
    parser.add_argument(
        "--archived_only", action="store_true", help="train nothing: tabulate the arms and seeds the archive completes"
    )
    args = parser.parse_args(argv)
    setup_logging()
    config_name, default_data = CORPORA[args.corpus]
    base = apply_overrides(load_config_file(args.config or REPO / "recipes" / "configs" / config_name), args.overrides)
    data_dir = str(args.data_dir or default_data)
    root = Path(args.output_dir) / args.corpus / args.classes
    archive = Path(args.archive or REPO / "recipes" / "studies" / "results" / args.corpus / args.classes)
    if args.pretrained:
        root, archive = root / f"from-{Path(args.pretrained).stem}", archive / f"from-{Path(args.pretrained).stem}"
    if args.overrides:
        variant = changes_folder(base, args.overrides)
        root, archive = root / variant, archive / variant
    all_folds = sorted(set(load_data(DataArguments(**{**base["data"], "data_dir": data_dir}))["fold"]))
    asked = {arm: arm_seeds(arm, args) for arm in args.arms}
    baseline: dict[int, dict] = {}  # the MFCC baseline per seed, fitted once for both tables
    folds = args.folds or all_folds
    summary = write_summary(
        [root], *collect(args, base, data_dir, root, archive, asked, folds, not args.archived_only, baseline)
    )
    # The archive's own table covers everything it holds, whatever this call asked for: a run of one arm or
    # fold never replaces the table of the others (nothing is trained for it)
    held = {"mfcc": args.seeds[:1]}
    held |= {arm: seeds for arm in ARMS if arm != "mfcc" and (seeds := archived_seeds(archive / arm))}
    archived = collect(args, base, data_dir, root, archive, held, all_folds, False, baseline)
    write_summary([archive], *archived, echo=False)
    return summary


def changes_folder(config: dict, overrides: list[str]) -> str:
    """The folder of a study whose config was changed with ``--set``: ``set-`` and each changed value as the
    config now holds it, sorted (``set-model.freeze_feature_encoder=true``), so the same changes, however
    typed, share one folder and other changes never meet the unchanged config's archive."""
    changed = set()
    for item in overrides:
        section, name = item.partition("=")[0].split(".", 1)
        value = config[section][name]
        changed.add(f"{section}.{name}={value if isinstance(value, str) else json.dumps(value)}")
    return "set-" + ",".join(sorted(changed))


def arm_seeds(arm: str, args: argparse.Namespace) -> list[int]:
    """The seeds an arm runs: all asked for the main arms, the first for mfcc (it draws nothing), the
    ablation seeds (default: the first) for the ablations."""
    if arm == "mfcc":
        return args.seeds[:1]
    if arm in ("plain-compute", "plain-epochs", "gmp-tl"):
        return args.seeds
    return args.ablation_seeds or args.seeds[:1]


def archived_seeds(arm_archive: Path) -> list[int]:
    """The seeds of an arm with at least one archived fold."""
    return sorted(int(folder.name[4:]) for folder in arm_archive.glob("seed*") if any(folder.glob("fold*.json")))


def collect(
    args: argparse.Namespace,
    base: dict,
    data_dir: str,
    root: Path,
    archive: Path,
    arms: dict[str, list[int]],
    folds: list[int],
    train: bool,
    baseline: dict[int, dict],
) -> tuple[dict, dict, list[str], dict]:
    """Run (``train``) or read from the archive every arm and seed of ``arms`` on ``folds``: the results per
    arm/stage, the compute each recorded, the arms not complete in the archive and their finished folds.
    ``baseline`` keeps the MFCC baseline's summary per seed once fitted (it always covers every fold)."""
    results: dict[str, list[dict]] = {}
    timings: dict[str, list[float]] = {}
    incomplete: list[str] = []
    partial: dict[str, list[dict]] = {}  # arms with only some folds archived: per-fold table only
    for arm, seeds in arms.items():
        for seed in seeds:
            complete = True
            if arm == "mfcc":
                if seed not in baseline:
                    config = arm_config(base, "plain-compute", seed, data_dir, args.classes)[0]
                    baseline[seed] = run_mfcc(config, root / arm / f"seed{seed}")
                summary = baseline[seed]
            else:
                arm_archive = archive / arm / f"seed{seed}"
                arm_folds = folds
                if not train:
                    arm_folds = [fold for fold in folds if (arm_archive / f"fold{fold}.json").is_file()]
                    complete = len(arm_folds) == len(folds)
                    if not complete:
                        incomplete.append(f"{arm} seed {seed} ({len(arm_folds)} of {len(folds)} folds archived)")
                    if not arm_folds:
                        continue
                summaries = []
                for group, group_root, group_base, encoder in encoder_groups(
                    args, base, data_dir, arm_folds, root, arm_archive, train
                ):
                    config, chain = arm_config(group_base, arm, seed, data_dir, args.classes)
                    run_dir = group_root / arm / f"seed{seed}"
                    if train:
                        copy_reused_steps(group_root, arm, seed, run_dir)
                    summaries += run_arm(config, chain, args.corpus, run_dir, arm_archive, group, encoder, train)
                summary = merge_folds(summaries)
            # a CV run reports the training + extraction time its steps recorded (right after resuming too)
            if complete:
                timings.setdefault(arm, []).append(summary["compute_time_s"])
            for stage in OWN_STAGES.get(arm, (summary.get("final_stage", "mfcc"),)):
                (results if complete else partial).setdefault(row_name(arm, stage), []).append(
                    {**summary["stages"][stage], "seed": seed, "arm": arm, "stage": stage}
                )
    return results, timings, incomplete, partial


def row_name(arm: str, stage: str) -> str:
    """A table row: the arm for its final model; ``mtl`` / ``stage1`` for the chain's earlier models, prefixed
    by the ablation that trained its own (``no-gender mtl``)."""
    if stage not in ("mtl", "stage1"):
        return arm
    return stage if arm == "gmp-tl" else f"{arm} {stage}"


def _cell(row: dict, metric: str, kind: str) -> str:
    """``mean ± std`` in percent; the mean is always over folds (and seeds), the spread over ``kind``."""
    spread = row[f"{metric}_{kind}_std"]
    return "–" if spread is None else f"{100 * row[f'{metric}_folds_mean']:.1f} ± {100 * spread:.1f}"


def sign_test(higher: int, lower: int) -> float:
    """Two-sided exact sign test (ties dropped): the chance of a split at least this uneven if either side
    were equally likely to be higher in each pair (scipy's binomial test; 1 when every pair is tied)."""
    return binomtest(higher, higher + lower).pvalue if higher + lower else 1.0


def p_text(p_value: float) -> str:
    """``= 0.30`` or ``< 0.01`` (two decimals say all a sign test over a few dozen pairs can)."""
    return "< 0.01" if p_value < 0.01 else f"= {p_value:.2f}"


def wins(results: dict[str, list[dict]], arm: str, baseline: str) -> tuple[str, float, float, float] | None:
    """In how many fold-seeds (same fold, same seed) ``arm`` has the higher test UAR than ``baseline`` (and
    how many are tied), the two mean UARs over those fold-seeds and the sign test's p-value."""
    pairs = [
        (run["per_fold"][fold]["uar"], other["per_fold"][fold]["uar"])
        for run in results.get(arm, [])
        for other in results.get(baseline, [])
        if run["seed"] == other["seed"]
        for fold in run["per_fold"]
        if fold in other["per_fold"]
    ]
    if not pairs:
        return None
    ties = sum(abs(a - b) < 1e-9 for a, b in pairs)  # the same recalls summed in another order
    higher = sum(a > b + 1e-9 for a, b in pairs)
    count = f"{higher} of {len(pairs)}" + (f" ({ties} tied)" if ties else "")
    means = np.mean(pairs, axis=0)
    return count, float(means[0]), float(means[1]), sign_test(higher, len(pairs) - higher - ties)


def per_fold_uar(results: dict[str, list[dict]], partial: dict[str, list[dict]]) -> dict[str, dict[int, float]]:
    """Test UAR of every fold, per arm (or stage) and seed; arms not finished yet marked. The MFCC baseline
    draws nothing, so its row names no seed (it is the same for any)."""
    return {
        (name if name == "mfcc" else f"{name} seed {run['seed']}") + note: {
            int(fold): one["uar"] for fold, one in run["per_fold"].items()
        }
        for group, note in ((results, ""), (partial, " (unfinished)"))
        for name, runs in group.items()
        for run in runs
    }


def per_fold_table(per_fold: dict[str, dict[int, float]]) -> list[str]:
    folds = sorted({fold for scores in per_fold.values() for fold in scores})
    lines = [
        "| arm, seed | " + " | ".join(f"fold {fold}" for fold in folds) + " | mean |",
        "|---" * (len(folds) + 2) + "|",
    ]
    for name, scores in per_fold.items():
        cells = [f"{100 * scores[fold]:.1f}" if fold in scores else "–" for fold in folds]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {100 * float(np.mean(list(scores.values()))):.1f} |")
    return lines


def write_summary(
    folders: list[Path],
    results: dict[str, list[dict]],
    timings: dict[str, list[float]],
    incomplete: list[str],
    partial: dict[str, list[dict]],
    echo: bool = True,
) -> dict:
    """``study_results.{md,json}`` in each of ``folders`` (printed too, with ``echo``). Every run of ``results``
    names the arm whose CV run made it and the stage (``collect`` adds both)."""
    lines = [
        "| arm | seeds | WAR over folds | UAR over folds | WAR over seeds | UAR over seeds | gender acc. "
        "| compute per CV run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    table: dict = {}
    for arm, runs in results.items():
        row: dict = {"seeds": len(runs)}
        for metric in ("war", "uar"):
            row[f"{metric}_folds_mean"] = float(np.mean([r[f"{metric}_mean"] for r in runs]))
            row[f"{metric}_folds_std"] = float(np.mean([r[f"{metric}_std"] for r in runs]))
            seed_means = np.array([r[f"{metric}_mean"] for r in runs])
            row[f"{metric}_seeds_std"] = float(seed_means.std()) if len(runs) > 1 else None
        gender = [r["gender_accuracy_mean"] for r in runs if "gender_accuracy_mean" in r]
        row["gender_accuracy"] = float(np.mean(gender)) if gender else None
        owner = runs[0]["arm"]  # earlier stages of a chain share its CV run's compute
        row["compute_time_s"] = float(np.mean(timings.get(owner, [float("nan")])))
        table[arm] = row
        seconds = row["compute_time_s"]
        took = f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
        took = f"(inside {owner})" if owner != arm else took
        cells = [_cell(row, metric, kind) for kind in ("folds", "seeds") for metric in ("war", "uar")]
        accuracy = "–" if row["gender_accuracy"] is None else f"{100 * row['gender_accuracy']:.1f}"
        lines.append(f"| {arm} | {len(runs)} | " + " | ".join(cells) + f" | {accuracy} | {took} |")
    pairs = [("gmp-tl", plain) for plain in ("plain-compute", "plain-epochs")]
    pairs += [(row, row_name("gmp-tl", runs[0]["stage"])) for row, runs in results.items() if runs[0]["arm"] in CHANGES]
    comparisons, paired_uar, sign_p = {}, {}, {}
    lines.append("")
    for row, other in pairs:
        if (outcome := wins(results, row, other)) is None:
            continue
        count, mean, other_mean, p_value = outcome
        name = f"{row} vs {other}"
        comparisons[name], paired_uar[name], sign_p[name] = count, [mean, other_mean], p_value
        lines.append(
            f"- {row} vs {other} (same seeds and folds): {row} has the higher test UAR in {count} fold-seeds; "
            f"mean {100 * mean:.1f} against {100 * other_mean:.1f} over them; sign test p {p_text(p_value)}"
        )
    if incomplete:
        lines.append(f"- not in the table, not finished yet: {'; '.join(incomplete)}")
    per_fold = per_fold_uar(results, partial)
    lines += ["", "Test UAR (%) per fold:", "", *per_fold_table(per_fold)]
    record = {"arms": table, "wins": comparisons, "paired_uar": paired_uar, "sign_test_p": sign_p,
              "incomplete": incomplete,
              "per_fold_uar": per_fold}  # fmt: skip
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "study_results.json").write_text(json.dumps(record, indent=2))
        (folder / "study_results.md").write_text("\n".join(lines) + "\n")
    if echo:
        print("\n".join(lines))
    return record


def cli(argv: list[str] | None = None) -> None:
    """``main`` from the command line: a refusal or a wrong value ends in one line (``--debug``: the traceback)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        main([arg for arg in argv if arg != "--debug"])
    except (ConfigError, RecordMismatch, RunLocked, FileNotFoundError) as error:
        stop("study.py", error, " ".join(str(error).split()), "--debug" in argv)


if __name__ == "__main__":
    cli()
