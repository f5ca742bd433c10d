"""Fine-tuning on one fold with the HF ``Trainer``: the MTL, stage-1 and stage-2 recipes (and a plain
utterance-CE baseline) differ only in where they start and which heads and losses are on.

    plain   pre-trained HuBERT -> emotion CE only (HubertForSequenceClassification-style baseline)
    mtl     pre-trained HuBERT -> emotion CE + gender_loss_weight x gender CE, no frame heads
    stage1  pre-trained HuBERT -> emotion CE + gmp_loss_weight x GMP frame CE (+ gender if asked)
    stage2  stage-1 model      -> AM-Softmax emotion head, frame heads removed
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from datasets import DatasetDict, load_from_disk
from transformers import (
    TrainingArguments,
    set_seed,
)

from ..arguments import (
    TRAINING_DEFAULTS,
    DataArguments,
    ModelArguments,
    RunArguments,
    check_training_arguments,
    parse_args,
)
from ..data.collator import CropEpochCallback, SERCollator, with_crop
from ..data.metrics import gender_accuracy, make_compute_metrics, ser_metrics
from ..fold_data import missing_classes, prepare_splits, sort_by_length, split_signature
from ..gmp.quantizer import GMPQuantizer
from ..hub import push_run, write_model_card
from ..model_setup import (
    build_model,
    gender_head_learns,
    load_feature_extractor,
    model_source,
    refit_emotion_head,
    refit_gender_head,
)
from ..processes import check_processes_connected, process_state
from ..records import (
    claim_step,
    close_step,
    fingerprint_rows,
    fingerprint_source,
    read_record,
    resolved_settings,
    run_lock,
    settings_defaults,
)
from ..trainer import SERTrainer, quiet_console, resume_point

logger = logging.getLogger(__name__)

STAGES = ("plain", "mtl", "stage1", "stage2")
RESULTS_NAME = "results.json"


def _gmp_inputs(model_args: ModelArguments, data_args: DataArguments) -> tuple[DatasetDict, GMPQuantizer]:
    """Stage 1: the labelled train/validation sets and the quantizer written by the GMP extraction."""
    if not model_args.gmp_dir:
        raise ValueError("stage1 needs --gmp_dir (the output folder of `gmp-tl extract`)")
    gmp_dir = Path(model_args.gmp_dir)
    meta = json.loads((gmp_dir / "gmp.json").read_text())
    if meta["split"] != split_signature(data_args):
        raise ValueError(f"{gmp_dir} was made for the split {meta['split']}, not {split_signature(data_args)}")
    labelled = DatasetDict({name: load_from_disk(str(gmp_dir / name)) for name in meta["labelled"]})
    return labelled, GMPQuantizer.from_pretrained(gmp_dir / "quantizer")


def step_inputs(stage: str, model_args: ModelArguments, splits: DatasetDict, seed: int) -> dict[str, Any]:
    """Fingerprints of what a training step reads: its data rows, the model it starts from (by content),
    and for stage 1 the GMP labels (by the extraction's output fingerprint)."""
    if model_args.encoder_preset and stage != "stage2":
        family = "" if model_args.encoder_family == "hubert" else f"{model_args.encoder_family}-"
        source = f"random-init:{family}{model_args.encoder_preset}:seed{seed}"
    else:
        source = fingerprint_source(model_args.model_name_or_path)
    inputs = {"data": fingerprint_rows(splits), "source": source}
    if stage == "stage1":
        record = read_record(model_args.gmp_dir) if model_args.gmp_dir else None
        if record is None or record.get("status") != "complete":
            raise ValueError(f"stage1 needs a finished GMP extraction in --gmp_dir, got {model_args.gmp_dir!r}")
        inputs["gmp"] = record["output"]
    return inputs


def step_settings(
    stage: str, data_args: DataArguments, model_args: ModelArguments, training_args: TrainingArguments
) -> dict[str, Any]:
    """Every setting of a training step that affects its result (paths of inputs are compared by content,
    through :func:`step_inputs`, so a copied or moved upstream folder still matches)."""
    settings = {"stage": stage, **resolved_settings(data_args, model_args, training_args, drop=("gmp_dir",))}
    settings["ModelArguments"].pop("model_name_or_path")
    return settings


def predict_split(trainer: SERTrainer, rows: Any, name: str, label_names: list[str]) -> tuple[Any, dict[str, Any]]:
    """The trainer's (emotion, gender) predictions on ``rows`` and the emotion scores they give."""
    prediction = trainer.predict(rows, metric_key_prefix=name)
    return prediction, ser_metrics(prediction.label_ids[0], np.argmax(prediction.predictions[0], axis=-1), label_names)


def base_model_id(model_name_or_path: str) -> str | None:
    """The Hub id a chain of run folders started from, or None when it started from a local or random
    encoder (a model card's ``base_model`` must name a Hub model, never a local path)."""
    path = Path(model_name_or_path)
    if path.exists():
        record = path / RESULTS_NAME
        if record.is_file():  # one of our run folders: follow it to where it started
            return base_model_id(json.loads(record.read_text())["model"]["model_name_or_path"])
        return None
    return model_name_or_path


def run_finetune(
    stage: str,
    data_args: DataArguments,
    model_args: ModelArguments,
    training_args: TrainingArguments,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train on ``data_args.fold``'s training folds, select on validation UAR, test on the fold.

    Writes the model (with code, feature extractor, quantizer and model card), ``results.json`` and
    ``record.json`` to ``training_args.output_dir``; returns the results. A folder made with other
    settings or inputs is refused unless ``overwrite``; a complete one with the same is reused.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    state = process_state()
    output_dir = Path(training_args.output_dir)
    settings = step_settings(stage, data_args, model_args, training_args)  # before the recipe adjusts them
    with run_lock(output_dir, enabled=state.is_main_process):
        # Arguments: what the recipe fixes itself
        push, training_args.push_to_hub = training_args.push_to_hub, False  # we push once, with our model card
        training_args.remove_unused_columns = False  # the collator needs the audio column
        training_args.label_names = ["labels", "gender_labels"]
        set_seed(training_args.seed)

        # Data: the fold's train / validation / test rows; the record refuses or reuses before any work
        splits = prepare_splits(data_args)
        inputs = step_inputs(stage, model_args, splits, training_args.seed)
        # every rank checks the folder before the main one clears it or writes the record
        defaults = settings_defaults(data_args, model_args, training_args)
        complete = claim_step(state, output_dir, stage, settings, inputs, overwrite, defaults)
        if complete and (output_dir / RESULTS_NAME).is_file():
            logger.info("%s: complete with the same settings and inputs; reusing it", output_dir)
            return json.loads((output_dir / RESULTS_NAME).read_text())
        quantizer = None
        if stage == "stage1":
            labelled, quantizer = _gmp_inputs(model_args, data_args)
            splits.update(labelled)
        label_names = splits["train"].features["emotion"].names
        fold_warnings = missing_classes(splits, label_names)
        for warning in fold_warnings:
            logger.warning("fold %d: %s", data_args.fold, warning)
        if "validation" not in splits:
            training_args.eval_strategy = "no"
            training_args.load_best_model_at_end = False

        # Model: where the stage starts, its heads and losses; the feature extractor and collator
        source = model_source(stage, model_args, output_dir, training_args.seed)
        model_args = replace(model_args, model_name_or_path=source)  # the record names what the stage started from
        gmp_classes = quantizer.num_classes if quantizer else []
        model = build_model(stage, source, model_args, label_names, gmp_classes, training_args.seed)
        extractor = load_feature_extractor(source)
        collator = SERCollator(extractor, model.config, channel=data_args.channel, seed=training_args.seed)
        for name in ("validation", "test"):
            if name in splits:
                splits[name] = sort_by_length(splits[name])

        # Trainer
        trainer = SERTrainer(
            model=model,
            args=training_args,
            train_dataset=with_crop(splits["train"], data_args.max_duration),
            eval_dataset=splits.get("validation"),
            data_collator=collator,
            processing_class=extractor,
            compute_metrics=make_compute_metrics(model.config.id2label, gender=gender_head_learns(model.config)),
            callbacks=[CropEpochCallback(collator)],
        )
        quiet_console(trainer)
        check_processes_connected(trainer)

        # Train (resuming from the newest complete checkpoint with --resume_from_checkpoint last)
        train_output = trainer.train(resume_from_checkpoint=resume_point(training_args))
        logger.log(
            logging.INFO if state.num_processes > 1 else logging.DEBUG,  # says each rank took part
            "rank %d/%d: trained %d optimizer steps on %d training clips",
            state.process_index,
            state.num_processes,
            trainer.state.global_step,
            len(splits["train"]),
        )

        # Evaluate: the heads refit for the final encoder on every clip outside the test fold, then validation
        # (only what no refit saw: no emotion scores once the emotion head is fitted on it) and test
        refit_parts = {name: splits[name] for name in ("train", "validation") if name in splits}
        gender_fit = refit_gender_head(model, refit_parts, collator) if model_args.refit_gender_head else None
        trained_head = None  # what the trained emotion head answers on the test fold, for the record only
        if model_args.refit_emotion_head and "test" in splits:
            _, scores = predict_split(trainer, splits["test"], "test", label_names)
            trained_head = {"war": scores["war"], "uar": scores["uar"]}
        emotion_fit = refit_emotion_head(model, refit_parts, collator) if model_args.refit_emotion_head else None
        if emotion_fit is not None and trained_head is not None:
            emotion_fit["test_before_refit"] = trained_head
        results: dict[str, Any] = {
            "stage": stage,
            "fold": data_args.fold,
            "data": asdict(data_args),
            "model": {**asdict(model_args), "config": model.config.to_diff_dict()},
            "world_size": state.num_processes,
            "global_step": trainer.state.global_step,
            "train_runtime": train_output.metrics.get("train_runtime"),
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "gender_head_refit": gender_fit,
            "emotion_head_refit": emotion_fit,
            "warnings": fold_warnings,
        }
        for name in ("validation", "test"):
            if name in splits and (emotion_fit is None or name not in emotion_fit["splits"]):
                prediction, results[name] = predict_split(trainer, splits[name], name, label_names)
                held_out = gender_fit is None or name not in gender_fit["splits"]
                results[name]["gender_accuracy"] = (
                    gender_accuracy(prediction.label_ids[1], prediction.predictions[1]) if held_out else None
                )

        # Save (model with its code, quantizer, results, record, model card) and push
        # the gender head fits this encoder if it was refit on it, or learnt on it (as a task or a probe) from
        # training clips that had genders
        had_genders = any(gender >= 0 for gender in splits["train"]["gender"])
        model.config.gender_head_trained = gender_fit is not None or (had_genders and gender_head_learns(model.config))
        results["model"]["config"]["gender_head_trained"] = model.config.gender_head_trained
        trainer.save_model(str(output_dir))  # writes on the main process only
        if state.is_main_process:
            if quantizer is not None:
                quantizer.save_pretrained(output_dir / "quantizer")
            elif model_args.gmp_dir is None and (Path(model_args.model_name_or_path) / "quantizer").is_dir():
                shutil.copytree(
                    Path(model_args.model_name_or_path) / "quantizer", output_dir / "quantizer", dirs_exist_ok=True
                )
            (output_dir / RESULTS_NAME).write_text(json.dumps(results, indent=2, default=str))
            close_step(output_dir, sorted(output_dir.glob("*.safetensors")))
            repo_id = (training_args.hub_model_id or output_dir.name) if push else None
            base_model = base_model_id(model_args.model_name_or_path)
            write_model_card(output_dir, results, base_model=base_model, repo_id=repo_id)
            if push:
                url = push_run(
                    output_dir, repo_id, token=training_args.hub_token, private=bool(training_args.hub_private_repo)
                )
                logger.warning("pushed %s to %s", output_dir, url)
        state.wait_for_everyone()
        return results


def main(stage: str, argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry of the fine-tuning recipes (``gmp-tl mtl|stage1|stage2|plain``)."""
    process_state()  # before TrainingArguments set up the process group
    data_args, model_args, training_args, run_args = parse_args(
        (DataArguments, ModelArguments, TrainingArguments, RunArguments), argv, defaults=TRAINING_DEFAULTS
    )
    check_training_arguments(training_args)
    results = run_finetune(stage, data_args, model_args, training_args, overwrite=run_args.overwrite)
    if "test" in results and process_state().is_main_process:
        print(
            f"{stage} fold {data_args.fold}: "
            f"test WAR {100 * results['test']['war']:.1f} UAR {100 * results['test']['uar']:.1f}"
        )
    return results
