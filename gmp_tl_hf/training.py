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
import os
import shutil
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import DistributedType, parse_flag_from_env
from datasets import DatasetDict, load_from_disk
from sklearn.linear_model import LogisticRegression
from torch.utils.data import SequentialSampler
from transformers import (
    HubertConfig,
    HubertModel,
    PretrainedConfig,
    PrinterCallback,
    ProgressCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    Wav2Vec2FeatureExtractor,
    set_seed,
)
from transformers.utils import logging as hf_logging

from .arguments import (
    HEAD_INITS,
    TRAINING_DEFAULTS,
    DataArguments,
    ModelArguments,
    RunArguments,
    check_training_arguments,
    parse_args,
)
from .data.collator import CropEpochCallback, SERCollator, scan_audio, with_crop
from .data.corpora import GENDERS, load_corpus, load_manifest
from .data.metrics import gender_accuracy, make_compute_metrics, ser_metrics
from .data.splits import assign_folds, fold_split, split_validation
from .data.synthetic import CorpusSpec, synthesize_corpus
from .gmp.quantizer import GMPQuantizer
from .hub import push_run, write_model_card
from .models.audio_io import longest_first
from .models.configuration_hubert_gmp import HubertGMPConfig
from .models.modeling_hubert_gmp import HubertForGMPEmotion, default_feature_extractor
from .presets import encoder_preset
from .records import (
    close_step,
    fingerprint_rows,
    fingerprint_source,
    newest_complete_checkpoint,
    open_step,
    read_record,
    record_differences,
    resolved_settings,
    run_lock,
)

logger = logging.getLogger(__name__)

STAGES = ("plain", "mtl", "stage1", "stage2")
STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "plain": {"emotion_head": "linear", "gender_loss_weight": 0.0},
    "mtl": {"emotion_head": "linear", "gender_loss_weight": 1.0},
    "stage1": {"emotion_head": "linear", "gender_loss_weight": 0.0},
    "stage2": {"emotion_head": "am_softmax", "gender_loss_weight": 0.0},
}
RESULTS_NAME = "results.json"


# ---------------------------------------------------------------- processes


def process_state() -> PartialState:
    """The processes of this run (torchrun, ``accelerate launch``), able to cooperate without a GPU.

    accelerate treats a launch on a machine without accelerators as one independent process per rank
    unless told to use the CPU; each rank would then train its own model on its own shard. So with
    several processes and no GPU, the CPU (gloo) is selected, for TrainingArguments too.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1 or "LOCAL_RANK" in os.environ
    if launched and not torch.cuda.is_available() and not os.environ.get("ACCELERATE_USE_CPU"):
        os.environ["ACCELERATE_USE_CPU"] = "true"
        logger.info("no GPU: running the %s processes on the CPU (gloo)", os.environ.get("WORLD_SIZE"))
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def check_processes_connected(trainer: Trainer) -> None:
    """Refuse to train when ranks were launched but are not joined into one distributed job."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if (
        world > 1
        and trainer.accelerator.num_processes > 1
        and trainer.accelerator.distributed_type == DistributedType.NO
    ):
        raise RuntimeError(
            f"{world} processes were launched but accelerate did not join them (distributed type NO); "
            "on a machine without GPUs set ACCELERATE_USE_CPU=true or pass --use_cpu"
        )


# ---------------------------------------------------------------- data


def load_data(data_args: DataArguments):
    """The whole corpus with a ``fold`` column."""
    if data_args.dataset == "synthetic":
        spec = CorpusSpec(data_args.synthetic_speakers_per_gender, data_args.synthetic_utterances_per_emotion)
        root = data_args.data_dir or str(Path.home() / ".cache" / "gmp_tl_hf" / f"synthetic-{spec.fingerprint()}")
        with process_state().main_process_first():  # one process writes the corpus, the others reuse it
            manifest = synthesize_corpus(root, spec)
        dataset = load_manifest(manifest, on_error=data_args.on_error)
    else:
        if not data_args.data_dir:
            raise ValueError(f"--data_dir is needed for dataset {data_args.dataset!r}")
        dataset = load_corpus(data_args.dataset, data_args.data_dir, data_args.classes, data_args.on_error)
    return assign_folds(dataset, data_args.fold_protocol, seed=data_args.split_seed)


def prepare_splits(data_args: DataArguments) -> DatasetDict:
    """train / validation (from the training folds) / test (the held-out fold), audio checked."""
    folds = fold_split(load_data(data_args), data_args.fold)
    parts = split_validation(folds["train"], data_args.validation, data_args.validation_size, data_args.split_seed)
    parts["test"] = folds["test"]
    return DatasetDict(
        {
            name: scan_audio(part, data_args.on_error, data_args.channel, desc=f"checking {name} audio")
            for name, part in parts.items()
        }
    )


def split_signature(data_args: DataArguments) -> dict[str, Any]:
    """The data arguments that decide the train/validation/test rows (stage 1 must match extraction)."""
    keys = ("dataset", "data_dir", "classes", "fold_protocol", "fold", "validation", "validation_size", "split_seed")
    return {key: getattr(data_args, key) for key in keys}


# ---------------------------------------------------------------- model


def load_feature_extractor(name_or_path: str) -> Wav2Vec2FeatureExtractor:
    """The checkpoint's feature extractor with ``return_attention_mask=True`` (our model is exact
    under padding), or the default one when the checkpoint has none."""
    try:
        extractor = Wav2Vec2FeatureExtractor.from_pretrained(name_or_path)
    except OSError:
        logger.warning("%s has no preprocessor_config.json; using the default 16 kHz feature extractor", name_or_path)
        extractor = default_feature_extractor()
    extractor.return_attention_mask = True
    return extractor


def materialize_random_encoder(preset: str, directory: str | Path, seed: int) -> str:
    """Save a randomly initialised HuBERT of ``preset`` size as a "pre-trained" checkpoint, so that
    every stage and arm of a from-scratch study starts from the very same weights."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        torch.manual_seed(seed)
        HubertModel(HubertConfig(**encoder_preset(preset))).save_pretrained(directory)
        default_feature_extractor().save_pretrained(directory)
    return str(directory)


def model_source(stage: str, model_args: ModelArguments, output_dir: Path, seed: int) -> str:
    """Where the stage starts: the given checkpoint, or (``encoder_preset``) a saved random encoder."""
    if model_args.encoder_preset and stage != "stage2":
        with process_state().main_process_first():  # one process writes it, the others load it
            return materialize_random_encoder(model_args.encoder_preset, output_dir / "random_init", seed)
    return model_args.model_name_or_path


def build_model(
    stage: str, source: str, model_args: ModelArguments, label_names: list[str], gmp_classes: list[int], seed: int
) -> HubertForGMPEmotion:
    defaults = STAGE_DEFAULTS[stage]
    overrides: dict[str, Any] = {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: i for i, name in enumerate(label_names)},
        "gender_labels": list(GENDERS),
        "gmp_cluster_sizes": gmp_classes,
        "pooling": model_args.pooling,
        "emotion_head": model_args.emotion_head or defaults["emotion_head"],
        "am_margin": model_args.am_margin,
        "am_scale": model_args.am_scale,
        "gender_loss_weight": defaults["gender_loss_weight"]
        if model_args.gender_loss_weight is None
        else model_args.gender_loss_weight,
        "gmp_loss_weight": model_args.gmp_loss_weight,
        "gmp_loss_frames": model_args.gmp_loss_frames,
        "use_weighted_layer_sum": model_args.use_weighted_layer_sum,
        "gender_input": model_args.gender_input,
        "gender_layer": model_args.gender_layer,
    }
    for key in ("mask_time_prob", "layerdrop"):
        if getattr(model_args, key) is not None:
            overrides[key] = getattr(model_args, key)
    # the checkpoint's config becomes ours explicitly (a plain HuBERT's too), so nothing is guessed on load
    values, _ = PretrainedConfig.get_config_dict(source)
    values = {key: value for key, value in values.items() if key not in CHECKPOINT_ONLY_KEYS}
    config = HubertGMPConfig(**{**values, **overrides})
    set_seed(seed)  # the new heads start the same in every run
    with quiet_loading_report():
        model, loading = HubertForGMPEmotion.from_pretrained(
            source, config=config, ignore_mismatched_sizes=True, output_loading_info=True
        )
    report_loading(stage, source, loading)
    if stage == "stage2":
        initialise_stage2_head(model, model_args.head_init, seed)
    if model_args.freeze_feature_encoder:
        model.freeze_feature_encoder()
    return model


HEAD_PREFIXES = ("projector.", "classifier.", "gender_classifier.", "gmp_heads.", "pooler.", "layer_weights")
CHECKPOINT_ONLY_KEYS = ("model_type", "architectures", "auto_map", "custom_pipelines", "transformers_version")


@contextmanager
def quiet_loading_report():
    """Hold back transformers' generic weight-loading table: :func:`report_loading` says what it means here.

    A filter on that one record, not a logger level: transformers runs other checks by its logger's level.
    """
    loading_logger = hf_logging.get_logger("transformers.modeling_utils")

    def not_the_report(record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in record.getMessage()

    loading_logger.addFilter(not_the_report)
    try:
        yield
    finally:
        loading_logger.removeFilter(not_the_report)


def report_loading(stage: str, source: str, loading: dict[str, list]) -> None:
    """One line for what is new or dropped by design (the heads a stage adds or removes), a warning for
    anything else (encoder weights missing or left over: a wrong checkpoint)."""
    keys = {kind: loading.get(kind, []) for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    keys["mismatched_keys"] = [entry[0] if isinstance(entry, tuple) else entry for entry in keys["mismatched_keys"]]
    expected = {
        kind: sorted({k.split(".")[0] for k in names if k.startswith(HEAD_PREFIXES)}) for kind, names in keys.items()
    }
    other = {kind: [k for k in names if not k.startswith(HEAD_PREFIXES)] for kind, names in keys.items()}
    logger.info(
        "%s from %s: new heads %s, dropped %s, re-initialised %s",
        stage, source, expected["missing_keys"] or "none", expected["unexpected_keys"] or "none",
        expected["mismatched_keys"] or "none",
    )  # fmt: skip
    for kind, names in other.items():
        if names:
            logger.warning("%s from %s: encoder weights %s: %s", stage, source, kind.replace("_", " "), names[:10])


class QuietProgressCallback(ProgressCallback):
    """The Trainer's training bar, without its evaluation bars and printed log dictionaries (those go to
    the log file; the step's result is one INFO line)."""

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        pass

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            logger.debug("step %d: %s", state.global_step, {k: v for k, v in logs.items() if k != "total_flos"})


class LogFileCallback(TrainerCallback):
    """With ``disable_tqdm``: the Trainer's logs to the log file, not the console."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            logger.debug("step %d: %s", state.global_step, {k: v for k, v in logs.items() if k != "total_flos"})


def initialise_stage2_head(model: HubertForGMPEmotion, head_init: str, seed: int) -> None:
    """Stage 2's emotion head: ``from_stage1`` keeps the weight rows loaded from the stage-1 emotion head
    (the AM-Softmax class vectors start as the linear head's, its bias dropped); ``fresh`` draws new ones."""
    if head_init not in HEAD_INITS:
        raise ValueError(f"head_init must be one of {HEAD_INITS}, got {head_init!r}")
    if head_init == "fresh":
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            weight = model.classifier.weight
            weight.copy_(torch.randn(weight.shape, generator=generator) * model.config.initializer_range)
            if getattr(model.classifier, "bias", None) is not None:
                model.classifier.bias.zero_()
    logger.info("stage2: %s emotion head, initialised %s", model.config.emotion_head, head_init.replace("_", " "))


# ---------------------------------------------------------------- the recipe


class SERTrainer(Trainer):
    """``Trainer`` that groups clips by length for training only.

    With ``train_sampling_strategy="group_by_length"`` the stock Trainer also shuffles evaluation
    into length groups, which under several processes loses or repeats clips. Evaluation here runs
    in dataset order (sharded by accelerate across processes); :func:`run_finetune` sorts the
    evaluation sets by length beforehand, so their batches carry little padding anyway.
    """

    def _get_eval_sampler(self, eval_dataset):
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None


@torch.no_grad()
def refit_gender_head(model: HubertForGMPEmotion, rows, collator: SERCollator, batch_size: int = 8) -> dict | None:
    """Refit the gender head by logistic regression on the final encoder's features of the training clips.

    The head is trained alongside the encoder (as a task or a probe), but a few epochs from scratch
    leave it far from converged; a closed-form fit on the encoder the model ends with makes the gender
    answer valid for that encoder, whatever the stage's losses were. Returns what was fitted.
    """
    genders = np.asarray(rows["gender"])
    rows = rows.select(np.flatnonzero(genders >= 0))
    if len(set(rows["gender"])) < len(model.config.gender_labels):
        logger.warning("not every gender occurs in the training clips; the gender head is left as trained")
        return None
    rows = sort_by_length(rows.select_columns(["audio", "gender", "num_samples"]))
    was_training = model.training
    model.eval()
    features = []
    for start in range(0, len(rows), batch_size):
        batch = collator([rows[i] for i in range(start, min(start + batch_size, len(rows)))])
        mask = batch.get("attention_mask")
        inputs = batch["input_values"].to(model.device)
        output = model.gender_features(inputs, None if mask is None else mask.to(model.device))
        features.append(output.float().cpu().numpy())
    model.train(was_training)
    features, targets = np.concatenate(features), np.asarray(rows["gender"])
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    classifier = LogisticRegression(C=1.0, max_iter=2000).fit((features - mean) / scale, targets)
    coef, intercept = classifier.coef_, classifier.intercept_
    if coef.shape[0] == 1:  # binary: logit(class 1) - logit(class 0) = w.x + b, split symmetrically
        coef, intercept = np.concatenate([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = coef / scale
    bias = intercept - weight @ mean
    head = model.gender_classifier
    head.weight.copy_(torch.as_tensor(weight, dtype=head.weight.dtype))
    head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
    accuracy = float((classifier.predict((features - mean) / scale) == targets).mean())
    logger.info("gender head refit on %d training clips (training accuracy %.3f)", len(targets), accuracy)
    return {
        "method": "logistic regression (C=1, standardised features)",
        "clips": len(targets),
        "train_accuracy": accuracy,
    }


def missing_classes(splits: DatasetDict, label_names: list[str]) -> list[str]:
    """A class absent from a split: training cannot learn it, or the test cannot measure it (UAR then
    averages the classes present). Said in the run's record, not only on the console."""
    found = []
    for name in ("train", "validation", "test"):
        if name in splits:
            absent = sorted(set(label_names) - {label_names[i] for i in set(splits[name]["emotion"])})
            if absent:
                found.append(f"no {name} clips of {absent}")
    return found


def sort_by_length(dataset):
    return dataset.select(longest_first(dataset["num_samples"]))


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
        source = f"random-init:{model_args.encoder_preset}:seed{seed}"
    else:
        source = fingerprint_source(model_args.model_name_or_path)
    inputs = {"data": fingerprint_rows(splits), "source": source}
    if stage == "stage1":
        record = read_record(model_args.gmp_dir) if model_args.gmp_dir else None
        if record is None or record.get("status") != "complete":
            raise ValueError(f"stage1 needs a finished GMP extraction in --gmp_dir, got {model_args.gmp_dir!r}")
        inputs["gmp"] = record["output"]
    return inputs


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
        return _run_finetune(stage, data_args, model_args, training_args, overwrite, state, output_dir, settings)


def step_settings(
    stage: str, data_args: DataArguments, model_args: ModelArguments, training_args: TrainingArguments
) -> dict[str, Any]:
    """Every setting of a training step that affects its result (paths of inputs are compared by content,
    through :func:`step_inputs`, so a copied or moved upstream folder still matches)."""
    settings = {"stage": stage, **resolved_settings(data_args, model_args, training_args, drop=("gmp_dir",))}
    settings["ModelArguments"].pop("model_name_or_path")
    return settings


def _run_finetune(stage, data_args, model_args, training_args, overwrite, state, output_dir, settings):
    push, training_args.push_to_hub = training_args.push_to_hub, False  # we push once, with our model card
    training_args.remove_unused_columns = False  # the collator needs the audio column
    training_args.label_names = ["labels", "gender_labels"]
    set_seed(training_args.seed)

    splits = prepare_splits(data_args)
    inputs = step_inputs(stage, model_args, splits, training_args.seed)
    changed = record_differences(output_dir, settings, inputs)
    if changed and not overwrite:  # every rank refuses alike, before anything is written
        open_step(output_dir, stage, settings, inputs, overwrite=False)
    if state.is_main_process:
        open_step(output_dir, stage, settings, inputs, overwrite=overwrite)
    state.wait_for_everyone()
    if read_record(output_dir)["status"] == "complete" and (output_dir / RESULTS_NAME).is_file():
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

    source = model_source(stage, model_args, output_dir, training_args.seed)
    model_args = replace(model_args, model_name_or_path=source)  # the record names what the stage started from
    gmp_classes = quantizer.num_classes if quantizer else []
    model = build_model(stage, source, model_args, label_names, gmp_classes, training_args.seed)
    extractor = load_feature_extractor(source)
    collator = SERCollator(extractor, model.config, channel=data_args.channel, seed=training_args.seed)
    for name in ("validation", "test"):
        if name in splits:
            splits[name] = sort_by_length(splits[name])
    trainer = SERTrainer(
        model=model,
        args=training_args,
        train_dataset=with_crop(splits["train"], data_args.max_duration),
        eval_dataset=splits.get("validation"),
        data_collator=collator,
        processing_class=extractor,
        compute_metrics=make_compute_metrics(model.config.id2label),
        callbacks=[CropEpochCallback(collator)],
    )
    for printer, replacement in ((ProgressCallback, QuietProgressCallback), (PrinterCallback, LogFileCallback)):
        if trainer.pop_callback(printer) is not None:
            trainer.add_callback(replacement)
    check_processes_connected(trainer)
    resume = training_args.resume_from_checkpoint
    if resume == "last":  # the newest complete checkpoint-* in output_dir, if any
        resume = newest_complete_checkpoint(output_dir) if state.is_main_process else None
        state.wait_for_everyone()
        resume = newest_complete_checkpoint(output_dir) if not state.is_main_process else resume
    train_output = trainer.train(resume_from_checkpoint=resume)
    logger.log(
        logging.INFO if state.num_processes > 1 else logging.DEBUG,  # says each rank took part
        "rank %d/%d: trained %d optimizer steps on %d training clips",
        state.process_index,
        state.num_processes,
        trainer.state.global_step,
        len(splits["train"]),
    )

    gender_fit = refit_gender_head(model, splits["train"], collator) if model_args.refit_gender_head else None
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
        "warnings": fold_warnings,
    }
    for name in ("validation", "test"):
        if name in splits:
            prediction = trainer.predict(splits[name], metric_key_prefix=name)
            logits, labels = prediction.predictions[0], prediction.label_ids[0]  # (emotion, gender) pairs
            results[name] = ser_metrics(labels, np.argmax(logits, axis=-1), label_names)
            results[name]["gender_accuracy"] = gender_accuracy(prediction.label_ids[1], prediction.predictions[1])
    # the gender head learnt (as a task or as a probe on this encoder) only where training clips had genders
    model.config.gender_head_trained = any(gender >= 0 for gender in splits["train"]["gender"])
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
        write_model_card(output_dir, results, base_model=base_model_id(model_args.model_name_or_path), repo_id=repo_id)
        if push:
            url = push_run(
                output_dir, repo_id, token=training_args.hub_token, private=bool(training_args.hub_private_repo)
            )
            logger.warning("pushed %s to %s", output_dir, url)
    state.wait_for_everyone()
    return results


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
