"""MFCC frames as a feature model: HuBERT's iteration-1 targets are k-means labels of MFCCs.

:class:`MFCCFrames` has the interface the feature store and the labeller read from an encoder
(``layer_features``, ``config.hidden_size``, ``config.min_input_samples``), so the pre-training targets
of iteration 1 are made by the very code that makes GMPs: :func:`extract_frame_features`, a
:class:`GMPQuantizer` fitted with our k-means, :func:`add_gmp_labels`.

One feature vector per encoder frame, by construction (ours): the analysis window is the encoder's
receptive field (400 samples, 25 ms at 16 kHz) and the hop its stride (320 samples, 20 ms), so frame
``t`` of the MFCCs covers exactly the samples encoder frame ``t`` sees. fairseq's recipe computes Kaldi
MFCCs every 10 ms and keeps every second label instead. Features: 13 cepstra of 23 mel bands (Kaldi's
defaults, as in fairseq's ``dump_mfcc_feature.py``) plus deltas and delta-deltas, 39 dims; Hamming window,
no pre-emphasis, dither or liftering (ours: k-means does not need them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..models.configuration_hubert_gmp import conv_output_length, receptive_field

SAMPLING_RATE = 16000


@dataclass
class MFCCConfig:
    """What the feature store and labeller read of a feature model's config."""

    hidden_size: int
    min_input_samples: int
    window: int
    hop: int
    name_or_path: str = "mfcc"


def mel_filterbank(num_bins: int, fft_size: int, rate: int = SAMPLING_RATE, low: float = 20.0) -> np.ndarray:
    """Triangular filters on the mel scale, ``(fft_size // 2 + 1, num_bins)`` (Kaldi's low cut of 20 Hz)."""
    mel = lambda hz: 1127.0 * np.log1p(np.asarray(hz) / 700.0)  # noqa: E731
    edges = np.linspace(mel(low), mel(rate / 2), num_bins + 2)
    bins = mel(np.arange(fft_size // 2 + 1) * rate / fft_size)[:, None]
    rising = (bins - edges[None, :-2]) / (edges[1:-1] - edges[:-2])
    falling = (edges[None, 2:] - bins) / (edges[2:] - edges[1:-1])
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def deltas(features: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Regression deltas over time (rows) with edge frames repeated, as Kaldi and torchaudio compute them."""
    padded = torch.cat([features[:1].expand(width, -1), features, features[-1:].expand(width, -1)])
    total = len(features)
    weights = range(1, width + 1)
    numerator = sum(
        n * (padded[width + n : width + n + total] - padded[width - n : width - n + total]) for n in weights
    )
    return numerator / (2 * sum(n * n for n in weights))


class MFCCFrames(nn.Module):
    """13 MFCCs + deltas + delta-deltas per encoder frame of ``encoder_config`` (see the module docstring)."""

    def __init__(self, encoder_config, num_mel_bins: int = 23, num_ceps: int = 13):
        super().__init__()
        kernels, strides = encoder_config.conv_kernel, encoder_config.conv_stride
        self.kernels, self.strides = tuple(kernels), tuple(strides)
        hop = int(np.prod(strides))
        window = receptive_field(kernels, strides)
        self.config = MFCCConfig(3 * num_ceps, window, window, hop)
        fft_size = 2 ** math.ceil(math.log2(window))
        self.fft_size = fft_size
        dct = np.cos(np.pi / num_mel_bins * (np.arange(num_mel_bins)[:, None] + 0.5) * np.arange(num_ceps)[None, :])
        dct *= np.sqrt(2.0 / num_mel_bins)
        dct[:, 0] /= np.sqrt(2.0)  # orthonormal DCT-II, as Kaldi's
        self.register_buffer("filterbank", torch.from_numpy(mel_filterbank(num_mel_bins, fft_size)))
        self.register_buffer("dct", torch.from_numpy(dct.astype(np.float32)))
        self.register_buffer("window", torch.hamming_window(window, periodic=False))

    def num_frames(self, num_samples: int) -> int:
        return int(conv_output_length(num_samples, self.kernels, self.strides))

    def clip_features(self, wave: torch.Tensor) -> torch.Tensor:
        """``(frames, 39)`` for one clip's valid samples."""
        frames = wave.float().unfold(0, self.config.window, self.config.hop)
        frames = frames - frames.mean(dim=1, keepdim=True)  # Kaldi removes each frame's DC offset
        power = torch.fft.rfft(frames * self.window, n=self.fft_size).abs().pow(2)
        cepstra = torch.log(power @ self.filterbank + 1e-10) @ self.dct
        first = deltas(cepstra)
        return torch.cat([cepstra, first, deltas(first)], dim=1)

    @torch.no_grad()
    def layer_features(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None, layer: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ``(batch, frames, 39)`` features and the valid-frame mask (``layer`` is not used: one
        "layer"). Each clip is analysed on its own valid samples, so padding changes nothing."""
        lengths = (
            attention_mask.sum(dim=-1).tolist()
            if attention_mask is not None
            else [input_values.shape[1]] * len(input_values)
        )
        total = self.num_frames(input_values.shape[1])
        features = input_values.new_zeros(len(input_values), total, self.config.hidden_size, dtype=torch.float32)
        frame_mask = torch.zeros(len(input_values), total, dtype=torch.bool, device=input_values.device)
        for row, length in enumerate(lengths):
            clip = self.clip_features(input_values[row, : int(length)])
            if len(clip) != self.num_frames(int(length)):
                raise ValueError(f"{len(clip)} MFCC frames for {self.num_frames(int(length))} encoder frames")
            features[row, : len(clip)] = clip
            frame_mask[row, : len(clip)] = True
        return features, frame_mask
