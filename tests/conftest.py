"""Shared fixtures. Everything runs offline on tiny random HuBERT checkpoints built here."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

# Before transformers/datasets are imported anywhere: no network, and caches inside the session.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="gmp-tl-hf-home-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pytest
import torch
from transformers import Trainer

from gmp_tl_hf import GMP_MODELS, HubertForGMPEmotion, HubertGMPConfig
from gmp_tl_hf.models.configuration_hubert_gmp import GMP_CONFIGS
from gmp_tl_hf.presets import encoder_preset

REPO_ROOT = Path(__file__).resolve().parent.parent
EMODB_DIR = REPO_ROOT.parent / "shared" / "data" / "emodb"
EMOTIONS4 = {0: "neutral", 1: "happy", 2: "angry", 3: "sad"}


def tiny_config(family: str = "hubert", **overrides) -> HubertGMPConfig:
    """A 2-layer, 32-wide encoder (HuBERT unless ``family`` says wavlm or wav2vec2) with 4 emotions and two
    small GMP scales, dropout off."""
    kwargs = encoder_preset("tiny")
    kwargs.update(
        id2label=EMOTIONS4,
        label2id={v: k for k, v in EMOTIONS4.items()},
        gmp_cluster_sizes=(5, 7),
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        final_dropout=0.0,
        layerdrop=0.0,
        mask_time_prob=0.0,
    )
    kwargs.update(overrides)
    return GMP_CONFIGS[family](**kwargs)


def tiny_model(seed: int = 0, family: str = "hubert", **overrides) -> HubertForGMPEmotion:
    torch.manual_seed(seed)
    return GMP_MODELS[family](tiny_config(family, **overrides)).eval()


def padded_batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random waveforms of ``lengths`` samples, right-padded, and their attention mask."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.zeros(len(lengths), max(lengths))
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, length in enumerate(lengths):
        values[row, :length] = torch.randn(length, generator=generator)
        mask[row, :length] = 1
    return values, mask


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> str:
    """Where the tiny synthetic corpus of the recipe tests is written (once per test module)."""
    return str(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def emodb_dir() -> Path:
    if not (EMODB_DIR / "metadata.csv").is_file():
        pytest.skip(f"EmoDB not found at {EMODB_DIR} (the shared data folder is absent)")
    return EMODB_DIR


def speechlike(seconds: float, sampling_rate: int = 16000, f0: float = 150.0, seed: int = 0) -> np.ndarray:
    """A voiced, amplitude-modulated harmonic signal with a little noise (float32)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    wave *= 0.5 * (1 + np.sin(2 * np.pi * 3 * t))
    return (0.1 * wave + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@contextmanager
def crash_after_the_first_checkpoint():
    """Training inside raises KeyboardInterrupt right after its first checkpoint is written (a crash)."""
    original = Trainer._save_checkpoint

    def save_then_crash(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise KeyboardInterrupt("simulated crash after the first checkpoint")

    Trainer._save_checkpoint = save_then_crash
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        Trainer._save_checkpoint = original
