"""The ``datasets`` map function that attaches GMP labels: one label per encoder frame and scale.

    dataset = add_gmp_labels(dataset, model, quantizer, feature_extractor)

or, by hand, ``dataset.map(attach_gmp_labels, batched=True, fn_kwargs=dict(model=..., quantizer=...,
feature_extractor=...), new_fingerprint=...)``. The labels are computed on the clip exactly as the
collator will feed it (same decoding, 16 kHz), so row ``t`` of ``gmp_labels`` belongs to encoder
frame ``t``: ``len(gmp_labels) == config.num_frames(num_samples)``.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from datasets import Dataset, Features, Sequence, Value
from transformers import Wav2Vec2FeatureExtractor

from ..data.collator import decode
from ..models.audio_io import TARGET_SAMPLING_RATE, longest_first
from .features import clip_lengths, model_device, model_fingerprint
from .quantizer import GMPQuantizer

LABELS_VERSION = "1"  # bump when the labelling logic changes: invalidates cached datasets


@torch.inference_mode()
def attach_gmp_labels(
    batch: dict,
    *,
    model,
    quantizer: GMPQuantizer,
    feature_extractor: Wav2Vec2FeatureExtractor,
    channel: int | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> dict:
    """Batched map function: adds ``gmp_labels`` (frames x scales, int16) for every row."""
    if model.config.hidden_size != quantizer.dim:
        raise ValueError(f"the model's features have {model.config.hidden_size} dims, the codebooks {quantizer.dim}")
    waves = [decode(audio, channel, model.config.min_input_samples) for audio in batch["audio"]]
    inputs = feature_extractor(
        waves, sampling_rate=TARGET_SAMPLING_RATE, padding=True, return_attention_mask=True, return_tensors="pt"
    ).to(model_device(model))
    model.eval()
    with torch.autocast(inputs["input_values"].device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        hidden, frame_mask = model.layer_features(inputs["input_values"], inputs["attention_mask"], quantizer.layer)
    hidden = hidden.float().cpu().numpy()
    genders = batch.get("gender") or [None] * len(waves)
    labels = []
    for row, (frames, gender) in enumerate(zip(frame_mask.sum(1).tolist(), genders)):
        if quantizer.gender_mode != "mtl" and (gender is None or gender < 0):
            raise ValueError(f"{batch['audio'][row]['path']}: gender_mode={quantizer.gender_mode!r} needs its gender")
        labels.append(quantizer.assign(hidden[row, :frames], gender).astype(np.int16))
    return {"gmp_labels": labels}


def add_gmp_labels(
    dataset: Dataset,
    model,
    quantizer: GMPQuantizer,
    feature_extractor: Wav2Vec2FeatureExtractor,
    batch_size: int = 8,
    channel: int | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> Dataset:
    """``dataset`` with a ``gmp_labels`` column, cached under a fingerprint of everything that decides
    the labels (rows, model weights, codebooks, feature extractor); rows are labelled in length order
    to cut padding and returned in their original order."""
    if len(dataset) == 0:
        raise ValueError("cannot attach GMP labels to an empty dataset")
    fingerprint = model_fingerprint(model)
    if quantizer.feature_model_fingerprint and quantizer.feature_model_fingerprint != fingerprint:
        raise ValueError(
            "the codebooks were fitted on features of another model "
            f"({quantizer.feature_model or 'unknown'}); labels must come from that same model"
        )
    if "gmp_labels" in dataset.column_names:
        dataset = dataset.remove_columns("gmp_labels")
    lengths = np.asarray(clip_lengths(dataset))
    order = longest_first(lengths)
    parts = [
        dataset._fingerprint,
        fingerprint,
        quantizer.fingerprint(),
        feature_extractor.to_json_string(),
        str(channel),
    ]
    new_fingerprint = hashlib.sha256("|".join([LABELS_VERSION, *parts]).encode()).hexdigest()[:32]
    features = Features({**dataset.features, "gmp_labels": Sequence(Sequence(Value("int16")))})
    labelled = dataset.select(order).map(
        attach_gmp_labels,
        batched=True,
        batch_size=batch_size,
        fn_kwargs={
            "model": model,
            "quantizer": quantizer,
            "feature_extractor": feature_extractor,
            "channel": channel,
            "autocast_dtype": autocast_dtype,
        },
        features=features,
        new_fingerprint=new_fingerprint,
        desc="attaching GMP labels",
    )
    return labelled.select(np.argsort(order, kind="stable"))
