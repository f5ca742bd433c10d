"""Short-time spectral features on the encoder's frame grid: log-mel bands, MFCCs and their deltas.

One feature vector per encoder frame, by construction: the analysis window is the encoder's receptive field
(400 samples, 25 ms at 16 kHz) and the hop its stride (320 samples, 20 ms), so frame ``t`` covers exactly the
samples encoder frame ``t`` sees, the encoder's frame mask applies as it is, and a long recording's frames
stitch like the encoder's. Each frame has its DC offset removed and a Hamming window (Kaldi's framing, no
pre-emphasis or dither); mel filters start at 20 Hz (Kaldi's low cut). The gender head reads their statistics
(:class:`~.modeling_hubert_gmp.GMPEmotionMixin`) and HuBERT's iteration-1 pre-training targets are their
k-means labels (``gmp_tl_hf.gmp.mfcc``).

This file is copied next to every saved checkpoint with the model code, so it imports only ``torch``.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

SAMPLING_RATE = 16000
GENDER_MEL_BINS, GENDER_CEPS = 40, 20  # the gender head's features: the MFCC + LR baseline's (ours)
GENDER_FEATURES = GENDER_MEL_BINS + 2 * GENDER_CEPS  # log-mel bands, MFCCs, MFCC deltas


def mel_filterbank(num_bins: int, fft_size: int, rate: int = SAMPLING_RATE, low: float = 20.0) -> torch.Tensor:
    """Triangular filters on the mel scale, ``(fft_size // 2 + 1, num_bins)``, float64."""

    def mel(hz):  # a float or a tensor
        return 1127.0 * (math.log1p(hz / 700.0) if isinstance(hz, float) else torch.log1p(hz / 700.0))

    edges = torch.linspace(mel(float(low)), mel(rate / 2.0), num_bins + 2, dtype=torch.float64)
    bins = mel(torch.arange(fft_size // 2 + 1, dtype=torch.float64) * rate / fft_size)[:, None]
    rising = (bins - edges[None, :-2]) / (edges[1:-1] - edges[:-2])
    falling = (edges[None, 2:] - bins) / (edges[2:] - edges[1:-1])
    return torch.minimum(rising, falling).clamp(min=0.0)


def dct_matrix(num_bins: int, num_ceps: int) -> torch.Tensor:
    """The orthonormal DCT-II ``(num_bins, num_ceps)`` (Kaldi's), float64: ``log_mel @ dct`` gives cepstra."""
    bins = torch.arange(num_bins, dtype=torch.float64)[:, None] + 0.5
    dct = torch.cos(math.pi / num_bins * bins * torch.arange(num_ceps, dtype=torch.float64)[None, :])
    dct = dct * math.sqrt(2.0 / num_bins)
    dct[:, 0] /= math.sqrt(2.0)
    return dct


def frame_deltas(features: torch.Tensor, frame_mask: torch.Tensor | None = None, width: int = 2) -> torch.Tensor:
    """Regression deltas over time of ``(batch, frames, dim)`` features, each clip's edge frames repeated
    (as Kaldi and torchaudio compute them) at its own last valid frame, so padding changes nothing."""
    batch, frames, dim = features.shape
    positions = torch.arange(frames, device=features.device)[None, :]
    if frame_mask is None:
        last = torch.full((batch, 1), frames - 1, device=features.device)
    else:
        last = (frame_mask.sum(dim=-1, keepdim=True) - 1).clamp(min=0)

    def shifted(offset: int) -> torch.Tensor:
        index = torch.minimum((positions + offset).clamp(min=0), last)
        return features.gather(1, index[..., None].expand(batch, frames, dim))

    numerator = sum(n * (shifted(n) - shifted(-n)) for n in range(1, width + 1))
    return numerator / (2 * sum(n * n for n in range(1, width + 1)))


def float32_region(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast switched off where it is on (log power spans a range bfloat16 would blur); nothing otherwise,
    so that an export traces no autocast region."""
    if torch.is_autocast_enabled(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def power_spectrum(input_values: torch.Tensor, window: int, hop: int) -> torch.Tensor:
    """``(batch, frames, window_fft // 2 + 1)`` power spectra of frames of ``window`` samples every ``hop``.

    One convolution with a fixed kernel (DC removal, Hamming window and real DFT folded together), so that
    it batches, exports to ONNX and runs in float32 even under autocast."""
    fft_size = 2 ** math.ceil(math.log2(window))
    bins = fft_size // 2 + 1
    samples = torch.arange(window, dtype=torch.float64)
    angles = 2 * math.pi / fft_size * samples[:, None] * torch.arange(bins, dtype=torch.float64)[None, :]
    dft = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    taper = 0.54 - 0.46 * torch.cos(2 * math.pi * samples / (window - 1))  # Hamming (written out: it exports)
    windowed = taper[:, None] * dft
    kernel = windowed - windowed.mean(dim=0, keepdim=True)  # sum_n (x_n - mean x) w_n d_n = sum_n x_n (w_n d_n - mean)
    kernel = kernel.T[:, None, :].to(device=input_values.device, dtype=torch.float32)
    with float32_region(input_values.device):
        spectrum = F.conv1d(input_values.float()[:, None], kernel, stride=hop).transpose(1, 2)
    return spectrum[..., :bins].square() + spectrum[..., bins:].square()


def log_mel_cepstra(
    input_values: torch.Tensor, window: int, hop: int, num_mel_bins: int, num_ceps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(batch, frames, num_mel_bins)`` log-mel bands and ``(batch, frames, num_ceps)`` MFCCs, in float32."""
    with float32_region(input_values.device):
        power = power_spectrum(input_values, window, hop)
        filterbank = mel_filterbank(num_mel_bins, 2 * (power.shape[-1] - 1)).to(power)
        log_mel = torch.log(power @ filterbank + 1e-10)
        return log_mel, log_mel @ dct_matrix(num_mel_bins, num_ceps).to(power)


def spectral_frames(
    input_values: torch.Tensor,
    window: int,
    hop: int,
    frame_mask: torch.Tensor | None = None,
    num_mel_bins: int = GENDER_MEL_BINS,
    num_ceps: int = GENDER_CEPS,
) -> torch.Tensor:
    """``(batch, frames, num_mel_bins + 2 * num_ceps)``: log-mel bands, MFCCs and MFCC deltas per frame.

    The defaults are the features of the study's MFCC + logistic-regression baseline (ours), on the encoder's
    frame grid; ``frame_mask`` `(batch, frames)` marks each clip's valid frames (for the deltas' edges)."""
    log_mel, cepstra = log_mel_cepstra(input_values, window, hop, num_mel_bins, num_ceps)
    with float32_region(input_values.device):
        return torch.cat([log_mel, cepstra, frame_deltas(cepstra, frame_mask)], dim=-1)
