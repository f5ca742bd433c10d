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
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import DistributedType, parse_flag_from_env
from datasets import DatasetDict, load_from_disk
from torch.utils.data import SequentialSampler
from transformers import HubertConfig, HubertModel, Trainer, TrainingArguments, Wav2Vec2FeatureExtractor, set_seed
from transformers.trainer_utils import get_last_checkpoint

from .arguments import DataArguments, ModelArguments
from .corpora import GENDERS, load_corpus, load_manifest
from .data import CropEpochCallback, SERCollator, scan_audio, with_crop
from .hub import push_run, write_model_card
from .metrics import make_compute_metrics, ser_metrics
from .modeling_hubert_gmp import HubertForGMPEmotion, default_feature_extractor
from .presets import encoder_preset
from .quantizer import GMPQuantizer
from .splits import assign_folds, fold_split, split_validation
from .synthetic import CorpusSpec, synthesize_corpus

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
    }
    for key in ("mask_time_prob", "layerdrop"):
        if getattr(model_args, key) is not None:
            overrides[key] = getattr(model_args, key)
    set_seed(seed)  # the new heads start the same in every run
    model = HubertForGMPEmotion.from_pretrained(source, ignore_mismatched_sizes=True, **overrides)
    if model_args.freeze_feature_encoder:
        model.freeze_feature_encoder()
    return model


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


def sort_by_length(dataset):
    return dataset.select(np.argsort(-np.asarray(dataset["num_samples"]), kind="stable"))


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


def run_finetune(
    stage: str, data_args: DataArguments, model_args: ModelArguments, training_args: TrainingArguments
) -> dict[str, Any]:
    """Train on ``data_args.fold``'s training folds, select on validation UAR, test on the fold.

    Writes the model (with code, feature extractor, quantizer and model card) and ``results.json`` to
    ``training_args.output_dir``; returns the results.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    state = process_state()
    output_dir = Path(training_args.output_dir)
    push, training_args.push_to_hub = training_args.push_to_hub, False  # we push once, with our model card
    training_args.remove_unused_columns = False  # the collator needs the audio column
    training_args.label_names = ["labels", "gender_labels"]
    set_seed(training_args.seed)

    splits = prepare_splits(data_args)
    quantizer = None
    if stage == "stage1":
        labelled, quantizer = _gmp_inputs(model_args, data_args)
        splits.update(labelled)
    label_names = splits["train"].features["emotion"].names
    if "validation" not in splits:
        training_args.eval_strategy = "no"
        training_args.load_best_model_at_end = False

    source = model_source(stage, model_args, output_dir, training_args.seed)
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
    check_processes_connected(trainer)
    resume = training_args.resume_from_checkpoint
    if resume == "last":  # the newest checkpoint-* in output_dir, if any
        resume = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    train_output = trainer.train(resume_from_checkpoint=resume)
    logger.warning(
        "rank %d/%d: trained %d optimizer steps on %d training clips",
        state.process_index,
        state.num_processes,
        trainer.state.global_step,
        len(splits["train"]),
    )

    results: dict[str, Any] = {
        "stage": stage,
        "fold": data_args.fold,
        "data": asdict(data_args),
        "model": {**asdict(model_args), "config": model.config.to_diff_dict()},
        "world_size": state.num_processes,
        "global_step": trainer.state.global_step,
        "train_runtime": train_output.metrics.get("train_runtime"),
        "best_checkpoint": trainer.state.best_model_checkpoint,
    }
    for name in ("validation", "test"):
        if name in splits:
            prediction = trainer.predict(splits[name], metric_key_prefix=name)
            logits, labels = prediction.predictions[0], prediction.label_ids[0]  # (emotion, gender) pairs
            results[name] = ser_metrics(labels, np.argmax(logits, axis=-1), label_names)
    trainer.save_model(str(output_dir))  # writes on the main process only
    if state.is_main_process:
        if quantizer is not None:
            quantizer.save_pretrained(output_dir / "quantizer")
        elif model_args.gmp_dir is None and (Path(model_args.model_name_or_path) / "quantizer").is_dir():
            shutil.copytree(
                Path(model_args.model_name_or_path) / "quantizer", output_dir / "quantizer", dirs_exist_ok=True
            )
        (output_dir / RESULTS_NAME).write_text(json.dumps(results, indent=2, default=str))
        repo_id = (training_args.hub_model_id or output_dir.name) if push else None
        write_model_card(output_dir, results, base_model=_base_model(model_args), repo_id=repo_id)
        if push:
            url = push_run(
                output_dir, repo_id, token=training_args.hub_token, private=bool(training_args.hub_private_repo)
            )
            logger.warning("pushed %s to %s", output_dir, url)
    state.wait_for_everyone()
    return results


def _base_model(model_args: ModelArguments) -> str:
    if model_args.encoder_preset:
        return f"random-init HuBERT ({model_args.encoder_preset} preset)"
    path = Path(model_args.model_name_or_path)
    card = path / RESULTS_NAME
    if card.is_file():  # stage 2 starts from a stage-1 folder: report what that started from
        return json.loads(card.read_text())["model"]["model_name_or_path"]
    return model_args.model_name_or_path


def main(stage: str, argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry of the fine-tuning recipes (``gmp-tl mtl|stage1|stage2|plain``)."""
    from .arguments import TRAINING_DEFAULTS, parse_args

    process_state()  # before TrainingArguments set up the process group
    data_args, model_args, training_args = parse_args(
        (DataArguments, ModelArguments, TrainingArguments), argv, defaults=TRAINING_DEFAULTS
    )
    results = run_finetune(stage, data_args, model_args, training_args)
    if "test" in results and process_state().is_main_process:
        print(
            f"{stage} fold {data_args.fold}: "
            f"test WAR {100 * results['test']['war']:.1f} UAR {100 * results['test']['uar']:.1f}"
        )
    return results
