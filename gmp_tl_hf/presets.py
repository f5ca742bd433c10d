"""Encoder sizes for runs that start from a randomly initialised HuBERT (tests, demo, offline studies).

Real runs start from a pre-trained checkpoint (``facebook/hubert-base-ls960``,
``facebook/hubert-large-ll60k``) and take its sizes from there.
"""

from __future__ import annotations

from typing import Any

# Every preset keeps HuBERT's conv stack strides and kernels (20 ms frames, 25 ms receptive field).
ENCODER_PRESETS: dict[str, dict[str, Any]] = {
    # Unit tests and the demo: a forward+backward of a 3 s clip in milliseconds.
    "tiny": dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        classifier_proj_size=32,
    ),
    # From-scratch studies on 2 CPU cores (an MTL fold of EmoDB trains in about 3 minutes, float32).
    "small": dict(
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        conv_dim=(64,) * 7,
        num_conv_pos_embeddings=64,
        num_conv_pos_embedding_groups=16,
        classifier_proj_size=128,
    ),
    # facebook/hubert-base-ls960 geometry (for speed and memory benchmarks).
    "base": dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        conv_dim=(512,) * 7,
        num_conv_pos_embeddings=128,
        num_conv_pos_embedding_groups=16,
        classifier_proj_size=256,
    ),
    # facebook/hubert-large-ll60k geometry (pre-layer-norm Transformer, layer-normed conv stack).
    "large": dict(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        conv_dim=(512,) * 7,
        conv_bias=True,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=128,
        num_conv_pos_embedding_groups=16,
        classifier_proj_size=256,
    ),
}


def encoder_preset(name: str) -> dict[str, Any]:
    """A copy of the HuBERT size arguments of preset ``name`` ("tiny", "small", "base" or "large")."""
    if name not in ENCODER_PRESETS:
        raise ValueError(f"unknown encoder preset {name!r}; choose from {sorted(ENCODER_PRESETS)}")
    return dict(ENCODER_PRESETS[name])
