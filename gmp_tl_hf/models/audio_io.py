"""Decode, downmix, resample and check audio: one implementation for training data and inference.

soundfile decodes (WAV/FLAC/OGG/MP3 through libsndfile, no FFmpeg), soxr resamples. This file is
copied next to every saved checkpoint for the pipeline, so it imports only numpy at module level;
soundfile and soxr are looked up when first needed and a clear error says how to install them.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

try:
    import soundfile
except ImportError:  # reported by _require() when decoding is actually asked for
    soundfile = None
try:
    import soxr
except ImportError:  # reported by _require() when resampling is actually asked for
    soxr = None

TARGET_SAMPLING_RATE = 16000
MIN_SAMPLES = 400  # one HuBERT frame: 25 ms receptive field at 16 kHz

AudioSource = str | os.PathLike | bytes | BinaryIO


class AudioError(ValueError):
    """A clip that cannot be used, with the file (or input) it came from and the reason."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


def _require(module, name: str):
    if module is None:
        raise ImportError(f"{name} is needed for this step: pip install {name}")
    return module


def describe(source: AudioSource) -> str:
    """A short name for error messages: the path, or the kind of in-memory input."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return f"<{type(source).__name__} input>"


def read_audio(source: AudioSource) -> tuple[np.ndarray, int]:
    """Read a file path, bytes or binary file object; returns float32 `(samples, channels)` and the rate."""
    sf = _require(soundfile, "soundfile")
    name = describe(source)
    if isinstance(source, (str, os.PathLike)) and not Path(source).is_file():
        raise AudioError(name, "file not found")
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        data, sampling_rate = sf.read(source, dtype="float32", always_2d=True)
    except Exception as error:  # libsndfile raises several types; all mean "unreadable"
        raise AudioError(name, f"unreadable or corrupt audio ({type(error).__name__}: {error})") from error
    return data, int(sampling_rate)


def to_mono(
    waveform: np.ndarray, channel: int | None = None, source: str = "<array input>", channels_first: bool | None = None
) -> np.ndarray:
    """Downmix `(samples, channels)` audio: average the channels, or keep one (``channel``).

    Keeping one channel is better for two-microphone recordings, where averaging mixes two delays.
    A 1-D array is already mono. ``channels_first=None`` (arrays given by a caller) takes the axis of
    length 1 or 2 as the channels, either way round; an array with more than two rows and columns is
    refused, since it is far more often a batch of clips than a multi-channel recording (files keep
    any channel count: their layout is known).
    """
    waveform = np.asarray(waveform)
    if waveform.ndim == 1:
        return waveform
    if waveform.ndim != 2:
        raise AudioError(source, f"expected 1-D or 2-D audio, got shape {waveform.shape}")
    if channels_first is None:
        if min(waveform.shape) > 2:
            raise AudioError(
                source,
                f"an array of shape {waveform.shape} is not mono or stereo audio; pass a list of clips for a "
                "batch (or a 1-D array per clip)",
            )
        channels_first = waveform.shape[0] <= 2 and waveform.shape[0] < waveform.shape[1]
    if channels_first:
        waveform = waveform.T
    if channel is None:
        return waveform.mean(axis=1)
    if not -waveform.shape[1] <= channel < waveform.shape[1]:
        raise AudioError(source, f"channel {channel} requested but the audio has {waveform.shape[1]} channel(s)")
    return waveform[:, channel]


def resample(
    waveform: np.ndarray, orig_sampling_rate: int, target_sampling_rate: int = TARGET_SAMPLING_RATE
) -> np.ndarray:
    """Band-limited resampling with soxr (high quality); a no-op when the rates match."""
    if orig_sampling_rate <= 0:
        raise ValueError(f"sampling rate must be positive, got {orig_sampling_rate}")
    if orig_sampling_rate == target_sampling_rate:
        return waveform
    return _require(soxr, "soxr").resample(waveform, orig_sampling_rate, target_sampling_rate, quality="HQ")


def check_waveform(waveform: np.ndarray, source: str, min_samples: int = MIN_SAMPLES) -> np.ndarray:
    """Raise :class:`AudioError` for empty, non-finite or too-short audio; return float32 mono."""
    if waveform.size == 0:
        raise AudioError(source, "empty audio (0 samples)")
    finite = np.isfinite(waveform)
    if not finite.all():
        bad = int((~finite).sum())
        raise AudioError(source, f"{bad} of {waveform.size} samples are NaN or infinite")
    if waveform.shape[-1] < min_samples:
        raise AudioError(
            source,
            f"{waveform.shape[-1]} samples at 16 kHz is shorter than one encoder frame ({min_samples} samples)",
        )
    return np.ascontiguousarray(waveform, dtype=np.float32)


def longest_first(lengths) -> np.ndarray:
    """Indices of ``lengths`` from longest to shortest, ties in input order: batches of neighbours in
    this order carry little padding. The one length ordering of the package (pipeline, features,
    labels, evaluation sets)."""
    return np.argsort(-np.asarray(lengths), kind="stable")


def load_waveform(
    source: AudioSource,
    sampling_rate: int | None = None,
    target_sampling_rate: int = TARGET_SAMPLING_RATE,
    channel: int | None = None,
    min_samples: int = MIN_SAMPLES,
) -> np.ndarray:
    """Any audio input to checked float32 mono at ``target_sampling_rate``.

    ``source`` is a path, bytes or file object (decoded with soundfile), or an array with its
    ``sampling_rate`` (required for arrays).
    """
    name = describe(source) if not isinstance(source, np.ndarray) else "<array input>"
    if isinstance(source, np.ndarray):
        if sampling_rate is None:
            raise ValueError("an array needs its sampling_rate")
        waveform, channels_first = source.astype(np.float32, copy=False), None
    else:
        waveform, file_rate = read_audio(source)
        if sampling_rate is not None and sampling_rate != file_rate:
            raise AudioError(name, f"file is {file_rate} Hz but sampling_rate={sampling_rate} was given")
        sampling_rate, channels_first = file_rate, False
    waveform = to_mono(waveform, channel=channel, source=name, channels_first=channels_first)
    check_waveform(waveform, name, min_samples=0)  # empty or NaN input, before resampling smears it
    return check_waveform(resample(waveform, sampling_rate, target_sampling_rate), name, min_samples)


def decode_input(
    inputs,
    sampling_rate: int | None,
    target_sampling_rate: int,
    channel: int | None = None,
    min_samples: int = MIN_SAMPLES,
) -> np.ndarray:
    """Any pipeline input to a checked mono waveform at ``target_sampling_rate``: a path, bytes, a file
    object, a numpy array, a torch tensor, a list of numbers (arrays at ``target_sampling_rate`` unless
    ``sampling_rate`` says otherwise), or a ``datasets``-style dict ``{"array" or "raw", "sampling_rate"}``."""
    if isinstance(inputs, dict):
        if "sampling_rate" not in inputs or not ("array" in inputs or "raw" in inputs):
            raise ValueError('a dict input needs "sampling_rate" and an "array" (or "raw") entry')
        sampling_rate = inputs["sampling_rate"]
        inputs = inputs["array"] if "array" in inputs else inputs["raw"]
    if hasattr(inputs, "detach"):  # a torch tensor (this file does not import torch)
        inputs = inputs.detach().cpu().numpy()
    if isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], (int, float)):
        inputs = np.asarray(inputs, dtype=np.float32)
    if isinstance(inputs, np.ndarray) and sampling_rate is None:
        sampling_rate = target_sampling_rate
    return load_waveform(inputs, sampling_rate, target_sampling_rate, channel=channel, min_samples=min_samples)


def decode_inputs(
    items: list, sampling_rate: int | None, target_sampling_rate: int, channel: int | None, min_samples: int
) -> tuple[dict[int, np.ndarray], dict[int, ValueError]]:
    """Decode and check every item before any compute: waveforms and errors, keyed by position."""
    waves, errors = {}, {}
    for index, item in enumerate(items):
        try:
            waves[index] = decode_input(item, sampling_rate, target_sampling_rate, channel, min_samples)
        except ValueError as error:  # AudioError included: bad file, bad array, bad dict
            errors[index] = error
    return waves, errors


def bad_inputs_error(errors: dict[int, ValueError], total: int) -> ValueError:
    """One error naming every bad item of a list (index and reason)."""
    listed = "; ".join(f"item {index}: {error}" for index, error in errors.items())
    return AudioError(f"{len(errors)} of {total} inputs", f"{listed} (on_error='skip' answers the rest)")


__all__ = [
    "AudioError",
    "bad_inputs_error",
    "check_waveform",
    "decode_input",
    "decode_inputs",
    "load_waveform",
    "longest_first",
    "read_audio",
    "resample",
    "to_mono",
]
