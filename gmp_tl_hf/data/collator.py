"""From corpus rows to model batches: a decode check over the whole set, and the batch collator.

The ``audio`` column stays path-based; clips are decoded (soundfile), downmixed and resampled (soxr)
when a batch is built, so nothing depends on torchcodec/FFmpeg and no decoded copy of the corpus is
cached. :func:`scan_audio` decodes everything once up front so that a bad file stops (or is skipped)
before training starts, never halfway through it.
"""

from __future__ import annotations

import logging
import math
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import TrainerCallback, Wav2Vec2FeatureExtractor

from ..models.audio_io import MIN_SAMPLES, TARGET_SAMPLING_RATE, AudioError, load_waveform
from ..models.configuration_hubert_gmp import HubertGMPConfig
from .corpora import report_errors

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


def audio_source(audio: dict) -> str | bytes:
    """The path (or the bytes) of a path-based ``Audio(decode=False)`` cell."""
    return audio["bytes"] if audio.get("bytes") else audio["path"]


def decode(audio: dict, channel: int | None = None, min_samples: int = MIN_SAMPLES) -> np.ndarray:
    """A 16 kHz float32 mono waveform from an ``audio`` cell (raises :class:`AudioError`)."""
    return load_waveform(audio_source(audio), channel=channel, min_samples=min_samples)


def scan_audio(
    dataset: Dataset,
    on_error: str = "raise",
    channel: int | None = None,
    min_samples: int = MIN_SAMPLES,
    num_threads: int = 4,
    desc: str = "checking audio",
) -> Dataset:
    """Decode every clip once; add ``num_samples`` (at 16 kHz) and deal with bad clips.

    Bad clips (missing, corrupt, empty, NaN/Inf, shorter than one encoder frame) raise one
    :class:`AudioError` naming each file and reason (``on_error="raise"``, after the whole scan, so
    you see every problem at once), or are logged and dropped (``"skip"``).
    """

    def check(audio: dict) -> int | AudioError:
        try:
            return len(decode(audio, channel, min_samples))
        except AudioError as error:
            return error

    with ThreadPoolExecutor(max_workers=num_threads) as pool:  # libsndfile and soxr release the GIL
        results = list(tqdm(pool.map(check, dataset["audio"]), total=len(dataset), desc=desc, leave=False))
    errors = [result for result in results if isinstance(result, AudioError)]
    report_errors(errors, on_error, f"{desc}: {len(dataset)} clips decoded")
    keep = [i for i, result in enumerate(results) if not isinstance(result, AudioError)]
    if len(keep) < len(dataset):
        dataset = dataset.select(keep)
    if "num_samples" in dataset.column_names:
        dataset = dataset.remove_columns("num_samples")
    return dataset.add_column("num_samples", [results[i] for i in keep])


def with_crop(dataset: Dataset, max_duration: float | None) -> Dataset:
    """Mark rows to be randomly cropped to ``max_duration`` seconds by the collator (training sets)."""
    crop = round(max_duration * TARGET_SAMPLING_RATE) if max_duration else 0
    if "crop_samples" in dataset.column_names:
        dataset = dataset.remove_columns("crop_samples")
    return dataset.add_column("crop_samples", [crop] * len(dataset))


@dataclass
class SERCollator:
    """Decode, crop, normalise and pad a list of corpus rows into a model batch.

    Row fields used: ``audio`` (path-based), ``emotion`` -> ``labels``, ``gender`` -> ``gender_labels``
    (-1 unknown -> -100), ``gmp_labels`` (frames x scales) -> padded with -100 to the encoder frame
    count of the padded batch, and ``crop_samples`` (> 0: random crop to that many samples, starting
    on a frame boundary so frame labels stay aligned; set by :func:`with_crop` on training sets).

    Crop offsets are a function of (``seed``, ``epoch``, utterance id), not of the global RNG or of where
    the corpus lies, so a run resumed from a checkpoint, or rerun on a copy of the corpus elsewhere,
    crops exactly as the first run did; :class:`CropEpochCallback` keeps ``epoch`` in step with the
    Trainer. The attention mask follows the feature extractor's ``return_attention_mask``; normalisation
    always uses the true clip lengths.
    """

    feature_extractor: Wav2Vec2FeatureExtractor
    config: HubertGMPConfig
    channel: int | None = None
    pad_to_multiple_of: int | None = None
    seed: int = 0
    epoch: int = 0

    def crop_start(self, row: dict, num_samples: int, crop: int) -> int:
        """A random frame-aligned start for a crop of ``crop`` samples out of ``num_samples``."""
        hop = int(np.prod(self.config.conv_stride))
        # the utterance id, not the path: the same corpus in another folder (or machine) crops alike
        key = zlib.crc32(str(row.get("id") or os.path.basename(row["audio"]["path"] or "")).encode())
        starts = (num_samples - crop) // hop + 1
        return hop * int(np.random.default_rng([self.seed, self.epoch, key]).integers(starts))

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        hop = int(np.prod(self.config.conv_stride))
        waves, frame_labels = [], []
        for row in rows:
            wave = decode(row["audio"], self.channel, self.config.min_input_samples)
            labels = row.get("gmp_labels")
            if labels is not None and len(labels) != self.config.num_frames(len(wave)):
                frames = self.config.num_frames(len(wave))
                raise ValueError(
                    f"{row['audio']['path']}: {len(labels)} frames of gmp_labels for a clip of {frames} encoder "
                    "frames; were the labels attached for another audio setup?"
                )
            start = 0
            crop = int(row.get("crop_samples") or 0)
            if crop and len(wave) > crop:
                start = self.crop_start(row, len(wave), crop)
                wave = wave[start : start + crop]
            if labels is not None:
                labels = np.asarray(labels, dtype=np.int64).reshape(len(labels), -1)
                first = start // hop
                labels = labels[first : first + self.config.num_frames(len(wave))]
            waves.append(wave)
            frame_labels.append(labels)

        batch = self.feature_extractor(
            waves,
            sampling_rate=self.feature_extractor.sampling_rate,
            padding=True,
            pad_to_multiple_of=self.pad_to_multiple_of,
            return_attention_mask=True,
            return_tensors="pt",
        )
        if not self.feature_extractor.return_attention_mask:
            del batch["attention_mask"]
        if "emotion" in rows[0]:
            batch["labels"] = torch.tensor([row["emotion"] for row in rows], dtype=torch.long)
        if "gender" in rows[0]:
            genders = [
                row["gender"] if row["gender"] is not None and row["gender"] >= 0 else IGNORE_INDEX for row in rows
            ]
            batch["gender_labels"] = torch.tensor(genders, dtype=torch.long)
        if frame_labels[0] is not None:
            frames = self.config.num_frames(batch["input_values"].shape[1])
            scales = frame_labels[0].shape[1]
            padded = torch.full((len(rows), frames, scales), IGNORE_INDEX, dtype=torch.long)
            for i, labels in enumerate(frame_labels):
                padded[i, : len(labels)] = torch.from_numpy(labels)
            batch["gmp_labels"] = padded
        return dict(batch)


class CropEpochCallback(TrainerCallback):
    """Tells the collator which epoch it is collating, so that crops change from epoch to epoch."""

    def __init__(self, collator: SERCollator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = math.floor(state.epoch or 0)
