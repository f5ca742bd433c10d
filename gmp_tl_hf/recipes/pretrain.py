"""Self-supervised HuBERT pre-training with the HF ``Trainer``, targets from our GMP engine:

    iteration 1   targets=mfcc    k-means labels of MFCC + deltas, one per 20 ms encoder frame
    iteration 2   targets=layer   k-means labels of a layer of target_model (e.g. iteration 1's output)

from a random encoder (``encoder_preset``) or from an existing checkpoint (``model_name_or_path``:
continued, domain- or task-adaptive pre-training). Several ``cluster_sizes`` give several target sets.

Writes into ``output_dir``: the encoder alone as a stock checkpoint (``config.json`` +
``model.safetensors`` + ``preprocessor_config.json``: every fine-tuning recipe takes the folder as
``model_name_or_path``), ``pretraining_head.safetensors`` (projection + codeword embeddings),
``targets/`` (features, codebooks, labelled rows), ``pretrain_results.json`` (loss and masked-prediction
accuracy per logging step, throughput) and ``record.json``. Resumable from its checkpoints like every
recipe; a rerun with other settings is refused.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from datasets import Dataset, load_from_disk
from safetensors.torch import save_file
from transformers import PretrainedConfig, TrainingArguments, set_seed

from ..arguments import (
    PRETRAIN_DEFAULTS,
    DataArguments,
    PretrainArguments,
    RunArguments,
    check_training_arguments,
    parse_args,
)
from ..data.collator import CropEpochCallback, SERCollator, scan_audio, with_crop
from ..data.corpora import load_corpus
from ..data.splits import fold_split
from ..fold_data import load_data
from ..gmp.features import extract_frame_features, model_fingerprint
from ..gmp.kmeans import MultiScaleKMeans
from ..gmp.labels import add_gmp_labels
from ..gmp.mfcc import MFCCFrames
from ..gmp.quantizer import GMPQuantizer
from ..model_setup import (
    STOCK_ENCODERS,
    load_feature_extractor,
    load_feature_model,
    materialize_random_encoder,
    quiet_loading_report,
)
from ..models.configuration_hubert_gmp import GMP_CONFIGS
from ..models.modeling_hubert_gmp import GMP_MODELS, encoder_family
from ..pretraining import MaskedPredictionModel, MaskedPredictionSettings
from ..processes import check_processes_connected, process_state
from ..records import (
    claim_step,
    close_step,
    fingerprint_rows,
    fingerprint_source,
    resolved_settings,
    run_lock,
    settings_defaults,
)
from ..trainer import MaskedPredictionTrainer, quiet_console, resume_point

logger = logging.getLogger(__name__)

RESULTS_NAME = "pretrain_results.json"
HEAD_NAME = "pretraining_head.safetensors"


def pretraining_rows(data_args: DataArguments, audio: str) -> Dataset:
    """The clips pre-training hears: the whole corpus, or (``training_folds``) every fold but the test fold."""
    if audio == "all" and data_args.dataset != "synthetic":
        rows = load_corpus(data_args.dataset, data_args.data_dir, data_args.classes, data_args.on_error)
    else:
        rows = load_data(data_args)
        rows = fold_split(rows, data_args.fold)["train"] if audio == "training_folds" else rows
    return scan_audio(rows, data_args.on_error, data_args.channel, desc="checking audio")


def encoder_source(args: PretrainArguments, seed: int) -> str:
    """The record's name for where the encoder starts: a checkpoint by content, a random one by recipe."""
    if args.encoder_preset:
        family = "" if args.encoder_family == "hubert" else f"{args.encoder_family}-"
        return f"random-init:{family}{args.encoder_preset}:seed{seed}"
    return fingerprint_source(args.model_name_or_path)


def make_targets(
    args: PretrainArguments, rows: Dataset, encoder_config: PretrainedConfig, extractor, directory: Path, channel
) -> tuple[Dataset, GMPQuantizer, dict[str, Any]]:
    """Features (MFCC or a layer) -> our multi-scale k-means -> one target per encoder frame and set.
    Made once: a resumed run finds them complete (``targets.json`` is written last)."""
    if (directory / "targets.json").is_file():
        summary = json.loads((directory / "targets.json").read_text())
        return (
            load_from_disk(str(directory / "labelled")),
            GMPQuantizer.from_pretrained(directory / "quantizer"),
            summary,
        )
    if args.targets == "mfcc":
        feature_model, layer, name = MFCCFrames(encoder_config), 0, "mfcc"
    else:
        feature_model, name = load_feature_model(args.target_model), args.target_model
        layer = args.target_layer or max(1, feature_model.config.num_hidden_layers // 2)
    device = process_state().device
    feature_model = feature_model.to(device).eval()
    start = time.perf_counter()
    store = extract_frame_features(feature_model, rows, directory / "features", layer, extractor, channel=channel)
    features_s = time.perf_counter() - start
    frames = store.frames(1.0, args.max_fit_frames, seed=args.kmeans_seed)
    kmeans = MultiScaleKMeans(tuple(args.cluster_sizes), tol=args.kmeans_tol, seed=args.kmeans_seed, device=device)
    quantizer = GMPQuantizer.fit(
        frames, args.cluster_sizes, "mtl", kmeans=kmeans,
        layer=layer, feature_model=name, feature_model_fingerprint=model_fingerprint(feature_model),
    )  # fmt: skip
    quantizer.save_pretrained(directory / "quantizer")
    kmeans_s = time.perf_counter() - start - features_s
    labelled = add_gmp_labels(rows, feature_model, quantizer, extractor, channel=channel)
    labelled.save_to_disk(str(directory / "labelled"))
    summary = {
        "targets": args.targets, "feature_model": name, "layer": layer, "cluster_sizes": list(args.cluster_sizes),
        "frames": store.num_frames, "kmeans_frames": frames.num_frames,
    }  # fmt: skip
    summary["timings"] = {"features_s": features_s, "kmeans_s": kmeans_s,
                          "labels_s": time.perf_counter() - start - features_s - kmeans_s}  # fmt: skip
    (directory / "targets.json").write_text(json.dumps(summary, indent=2))
    return labelled, quantizer, summary


def step_record(
    args: PretrainArguments, data_args: DataArguments, training_args: TrainingArguments, rows: Dataset
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The settings and inputs a pre-training run's record holds (what a rerun is compared on), and the
    defaults that stand for settings an older record lacks; known before any training, so a study can name
    an encoder it has not (re)made on this machine."""
    paths = ("model_name_or_path", "target_model")  # compared by content, through the inputs
    settings = {"stage": "pretrain", **resolved_settings(args, data_args, training_args, drop=paths)}
    inputs = {"data": fingerprint_rows({"audio": rows}), "source": encoder_source(args, training_args.seed)}
    if args.target_model:
        inputs["target_model"] = fingerprint_source(args.target_model)
    return settings, inputs, settings_defaults(args, data_args, training_args)


def run_pretrain(
    args: PretrainArguments, data_args: DataArguments, training_args: TrainingArguments, overwrite: bool = False
) -> dict[str, Any]:
    """Pre-train on ``data_args``'s audio; see the module docstring for what ``output_dir`` receives."""
    state = process_state()
    output_dir = Path(training_args.output_dir)
    with run_lock(output_dir, enabled=state.is_main_process):
        # Arguments: what the recipe fixes itself
        training_args.remove_unused_columns = False  # the collator needs the audio column
        set_seed(training_args.seed)

        # Data: the clips to pre-train on; the record refuses or reuses before any work
        rows = pretraining_rows(data_args, args.audio)
        settings, inputs, defaults = step_record(args, data_args, training_args, rows)
        complete = claim_step(state, output_dir, "pretrain", settings, inputs, overwrite, defaults)
        if complete and (output_dir / RESULTS_NAME).is_file():
            logger.info("%s: complete with the same settings and inputs; reusing it", output_dir)
            return json.loads((output_dir / RESULTS_NAME).read_text())

        # Targets: one codeword per encoder frame and target set, made by the main process once
        source = args.model_name_or_path
        if args.encoder_preset:  # a random encoder, saved once so that a resumed run starts from the same
            with state.main_process_first():
                source = materialize_random_encoder(
                    args.encoder_preset, output_dir / "random_init", training_args.seed, args.encoder_family
                )
        values, _ = PretrainedConfig.get_config_dict(source)
        family = encoder_family(values.get("model_type", "hubert"))
        config_class, stock_class = STOCK_ENCODERS[family]
        encoder_config = config_class.from_pretrained(source)
        extractor = load_feature_extractor(source)
        with state.main_process_first():
            labelled, quantizer, targets = make_targets(
                args, rows, encoder_config, extractor, output_dir / "targets", data_args.channel
            )
        logger.info(
            "targets: %s, K = %s, %d frames of %d clips", targets["feature_model"], quantizer.cluster_sizes,
            targets["frames"], len(rows),
        )  # fmt: skip

        # Model: the encoder (as pre-trained, or random) + HuBERT's prediction head; collator
        with quiet_loading_report():
            encoder = GMP_MODELS[family].ENCODER.from_pretrained(source, config=encoder_config)
        head = MaskedPredictionSettings(
            tuple(quantizer.num_classes), args.final_dim, args.logit_temp, args.mask_prob, args.mask_length,
            masked_weight=args.masked_weight, unmasked_weight=args.unmasked_weight,
        )  # fmt: skip
        model = MaskedPredictionModel(encoder, head)
        frames_config = GMP_CONFIGS[family](**{**encoder_config.to_dict(), "gmp_cluster_sizes": quantizer.num_classes})
        collator = SERCollator(extractor, frames_config, channel=data_args.channel, seed=training_args.seed)
        train_rows = with_crop(labelled.remove_columns(["emotion", "gender"]), data_args.max_duration)

        # Trainer
        trainer = MaskedPredictionTrainer(
            model=model,
            args=training_args,
            train_dataset=train_rows,
            data_collator=collator,
            processing_class=extractor,
            callbacks=[CropEpochCallback(collator)],
        )
        quiet_console(trainer)
        check_processes_connected(trainer)

        # Train (resuming from the newest complete checkpoint with --resume_from_checkpoint last)
        train_output = trainer.train(resume_from_checkpoint=resume_point(training_args))

        # Save: the encoder as a stock checkpoint, the head, results, record
        crop = data_args.max_duration
        epoch_seconds = sum(min(n / 16000, crop or float("inf")) for n in train_rows["num_samples"])
        runtime = train_output.metrics.get("train_runtime")
        history = [entry for entry in trainer.state.log_history if "loss" in entry]
        results: dict[str, Any] = {
            "stage": "pretrain",
            "data": {"dataset": data_args.dataset, "clips": len(rows), "audio": args.audio, "fold": data_args.fold},
            "source": source,
            "targets": targets,
            "head": vars(head),
            "global_step": trainer.state.global_step,
            "epochs": trainer.state.epoch,
            "train_runtime": runtime,
            "audio_seconds_per_second": (trainer.state.epoch or 0) * epoch_seconds / runtime if runtime else None,
            "history": history,
            "world_size": state.num_processes,
        }
        if state.is_main_process:
            model.save_encoder(output_dir, stock_class)
            extractor.save_pretrained(output_dir)
            head_weights = {"final_proj.weight": model.final_proj.weight, "final_proj.bias": model.final_proj.bias,
                            "label_embeddings": model.label_embeddings}  # fmt: skip
            save_file({k: v.detach().cpu().contiguous() for k, v in head_weights.items()}, str(output_dir / HEAD_NAME))
            (output_dir / RESULTS_NAME).write_text(json.dumps(results, indent=2, default=str))
            close_step(output_dir, [output_dir / "model.safetensors", output_dir / HEAD_NAME])
        state.wait_for_everyone()
        return results


def parse_pretrain_args(argv: list[str] | None = None) -> tuple:
    """(PretrainArguments, DataArguments, TrainingArguments, RunArguments) from a config and flags."""
    process_state()  # before TrainingArguments set up the process group
    parsed = parse_args(
        (PretrainArguments, DataArguments, TrainingArguments, RunArguments), argv, defaults=PRETRAIN_DEFAULTS
    )
    check_training_arguments(parsed[2])
    return parsed


def expected_record(argv: list[str]) -> dict[str, Any]:
    """The record (settings and inputs) that ``gmp-tl pretrain ARGV`` writes, without training, and the
    ``defaults`` that stand for settings an older copy of it lacks (:func:`..records.differences`)."""
    args, data_args, training_args, _ = parse_pretrain_args(argv)
    rows = pretraining_rows(data_args, args.audio)
    settings, inputs, defaults = step_record(args, data_args, training_args, rows)
    return {"settings": settings, "inputs": inputs, "defaults": defaults}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry of the pre-training recipe (``gmp-tl pretrain``)."""
    args, data_args, training_args, run_args = parse_pretrain_args(argv)
    results = run_pretrain(args, data_args, training_args, overwrite=run_args.overwrite)
    if process_state().is_main_process:
        last = results["history"][-1] if results["history"] else {}
        accuracy = ", ".join(f"{v:.3f}" for k, v in sorted(last.items()) if k.startswith("masked_accuracy"))
        print(
            f"pre-trained encoder in {training_args.output_dir}: {results['global_step']} steps, "
            f"last loss {last.get('loss', float('nan')):.3f}, masked-prediction accuracy {accuracy or '-'}"
        )
    return results
