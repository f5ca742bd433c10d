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

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..models.configuration_hubert_gmp import conv_output_length, receptive_field
from ..models.spectral import frame_deltas, log_mel_cepstra


@dataclass
class MFCCConfig:
    """What the feature store and labeller read of a feature model's config."""

    hidden_size: int
    min_input_samples: int
    window: int
    hop: int
    name_or_path: str = "mfcc"


class MFCCFrames(nn.Module):
    """13 MFCCs + deltas + delta-deltas per encoder frame of ``encoder_config`` (see the module docstring)."""

    def __init__(self, encoder_config, num_mel_bins: int = 23, num_ceps: int = 13):
        super().__init__()
        kernels, strides = encoder_config.conv_kernel, encoder_config.conv_stride
        self.kernels, self.strides = tuple(kernels), tuple(strides)
        hop = int(np.prod(strides))
        window = receptive_field(kernels, strides)
        self.config = MFCCConfig(3 * num_ceps, window, window, hop)
        self.num_mel_bins, self.num_ceps = num_mel_bins, num_ceps
        self.register_buffer("device_marker", torch.zeros(0), persistent=False)  # where it runs: model_device

    def num_frames(self, num_samples: int) -> int:
        return int(conv_output_length(num_samples, self.kernels, self.strides))

    def clip_features(self, wave: torch.Tensor) -> torch.Tensor:
        """``(frames, 39)`` for one clip's valid samples (the framing of :mod:`gmp_tl_hf.models.spectral`)."""
        _, cepstra = log_mel_cepstra(wave[None], self.config.window, self.config.hop, self.num_mel_bins, self.num_ceps)
        first = frame_deltas(cepstra)
        return torch.cat([cepstra, first, frame_deltas(first)], dim=-1)[0]

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
