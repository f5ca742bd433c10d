"""The GMP extraction recipe: MTL-model features -> multi-scale codebooks -> labelled datasets.

Writes into ``output_dir``: ``features/`` (streamed frame shards of the training fold),
``quantizer/`` (codebooks), ``train/`` and ``validation/`` (``save_to_disk`` datasets with a
``gmp_labels`` column) and ``gmp.json`` (settings, split and timings). Under ``accelerate launch`` or
``torchrun`` every process extracts and labels its share; process 0 fits the codebooks.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from datasets import concatenate_datasets, load_from_disk

from ..arguments import DataArguments, GMPArguments, parse_args
from ..fold_data import prepare_splits, split_signature
from ..gmp.features import FrameFeatureStore, extract_frame_features, model_fingerprint
from ..gmp.kmeans import MultiScaleKMeans
from ..gmp.labels import add_gmp_labels
from ..gmp.quantizer import GMPQuantizer
from ..model_setup import load_feature_extractor, load_gmp_model
from ..processes import process_state
from ..records import (
    claim_step,
    close_step,
    fingerprint_rows,
    fingerprint_source,
    resolved_settings,
    run_lock,
    settings_defaults,
)

logger = logging.getLogger(__name__)
AUTOCAST = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}


def default_layer(num_layers: int) -> int:
    """Three quarters of the depth (9 of 12, 18 of 24): our choice where the paper gives no layer."""
    return max(1, round(0.75 * num_layers))


def extraction_settings(gmp_args: GMPArguments, data_args: DataArguments) -> dict[str, Any]:
    """Every setting of an extraction that affects its result (the MTL model is compared by content)."""
    return {"stage": "extract", **resolved_settings(gmp_args, data_args, drop=("model_name_or_path",))}


def run_extract(gmp_args: GMPArguments, data_args: DataArguments) -> dict[str, Any]:
    state = process_state()
    output_dir = Path(gmp_args.output_dir)
    with run_lock(output_dir, enabled=state.is_main_process):
        return _run_extract(gmp_args, data_args, state, output_dir)


def _run_extract(gmp_args: GMPArguments, data_args: DataArguments, state, output_dir: Path) -> dict[str, Any]:
    if gmp_args.autocast not in AUTOCAST:
        raise ValueError(f"autocast must be bf16, fp16 or unset, got {gmp_args.autocast!r}")
    if not gmp_args.model_name_or_path:
        raise ValueError("--model_name_or_path must name the MTL model to take features from")
    splits = prepare_splits(data_args)
    settings = extraction_settings(gmp_args, data_args)
    inputs = {"data": fingerprint_rows(splits), "source": fingerprint_source(gmp_args.model_name_or_path)}
    # every rank checks the folder before the main one clears it or writes the record
    defaults = settings_defaults(gmp_args, data_args)
    complete = claim_step(state, output_dir, "extract", settings, inputs, gmp_args.overwrite, defaults)
    if complete and (output_dir / "gmp.json").is_file():
        logger.info("%s: complete with the same settings and inputs; reusing it", output_dir)
        return json.loads((output_dir / "gmp.json").read_text())
    model = load_gmp_model(gmp_args.model_name_or_path).to(state.device).eval()
    extractor = load_feature_extractor(gmp_args.model_name_or_path)
    layer = gmp_args.layer or default_layer(model.config.num_hidden_layers)
    autocast = AUTOCAST[gmp_args.autocast]
    timings: dict[str, float] = {}

    fit_rows = splits["train"]
    if gmp_args.transductive:
        logger.warning("transductive: the test fold's audio (not its labels) joins the k-means fit")
        fit_rows = concatenate_datasets([fit_rows, splits["test"]])
    start = time.perf_counter()
    extract_frame_features(
        model, fit_rows, output_dir / "features", layer, extractor,
        max_batch_seconds=gmp_args.batch_seconds, autocast_dtype=autocast, channel=data_args.channel,
        rank=state.process_index, world_size=state.num_processes,
    )  # fmt: skip
    state.wait_for_everyone()
    timings["features_s"] = time.perf_counter() - start

    fingerprint = model_fingerprint(model)
    if state.is_main_process:
        start = time.perf_counter()
        store = FrameFeatureStore(output_dir / "features")
        frames = store.frames(gmp_args.fit_fraction, gmp_args.max_fit_frames, seed=gmp_args.seed)  # streamed
        kmeans = MultiScaleKMeans(
            tuple(gmp_args.cluster_sizes), max_iter=gmp_args.kmeans_max_iter, tol=gmp_args.kmeans_tol,
            seed=gmp_args.seed, device=state.device,
        )  # fmt: skip
        quantizer = GMPQuantizer.fit(
            frames, gmp_args.cluster_sizes, gmp_args.gender_mode, kmeans=kmeans,
            layer=layer, feature_model=gmp_args.model_name_or_path, feature_model_fingerprint=fingerprint,
        )  # fmt: skip
        quantizer.save_pretrained(output_dir / "quantizer")
        timings["kmeans_s"] = time.perf_counter() - start
        timings["kmeans_frames"] = frames.num_frames
    state.wait_for_everyone()
    quantizer = GMPQuantizer.from_pretrained(output_dir / "quantizer")

    start = time.perf_counter()
    labelled = [name for name in ("train", "validation") if name in splits]
    for name in labelled:
        part = splits[name].shard(state.num_processes, state.process_index, contiguous=True)
        part = add_gmp_labels(part, model, quantizer, extractor, channel=data_args.channel, autocast_dtype=autocast)
        part.save_to_disk(str(output_dir / "parts" / f"{name}-{state.process_index}"))
    state.wait_for_everyone()
    timings["labels_s"] = time.perf_counter() - start

    summary = {
        "model": gmp_args.model_name_or_path,
        "layer": layer,
        "cluster_sizes": list(gmp_args.cluster_sizes),
        "gender_mode": gmp_args.gender_mode,
        "num_classes": quantizer.num_classes,
        "transductive": gmp_args.transductive,
        "split": split_signature(data_args),
        "labelled": labelled,
        "world_size": state.num_processes,
        "timings": timings,
    }
    if state.is_main_process:
        for name in labelled:
            parts = [
                load_from_disk(str(output_dir / "parts" / f"{name}-{rank}")) for rank in range(state.num_processes)
            ]
            concatenate_datasets(parts).save_to_disk(str(output_dir / name))
        shutil.rmtree(output_dir / "parts")
        (output_dir / "gmp.json").write_text(json.dumps(summary, indent=2))
        outputs = [*(output_dir / "quantizer").iterdir(), *(f for n in labelled for f in (output_dir / n).iterdir())]
        close_step(output_dir, [f for f in outputs if f.is_file()])  # last: marks completion
    state.wait_for_everyone()
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry of the extraction recipe (``gmp-tl extract``)."""
    gmp_args, data_args = parse_args((GMPArguments, DataArguments), argv)
    summary = run_extract(gmp_args, data_args)
    if process_state().is_main_process:
        print(
            f"GMP labels in {gmp_args.output_dir}: layer {summary['layer']}, classes per scale {summary['num_classes']}"
        )
    return summary
