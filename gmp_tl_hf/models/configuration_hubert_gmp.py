"""Configuration of :class:`HubertForGMPEmotion`.

This file is copied next to every saved checkpoint (``trust_remote_code``), so it imports only
``transformers`` and the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from transformers import HubertConfig, Wav2Vec2Config, WavLMConfig

POOLING_MODES = ("mean", "attentive", "statistics")
EMOTION_INPUTS = ("projected", "all_layers")
EMOTION_HEADS = ("linear", "am_softmax")
GMP_LOSS_FRAMES = ("all", "masked")
GENDER_INPUTS = ("embedding", "statistics")


def conv_output_length(num_samples, kernels: Sequence[int], strides: Sequence[int]):
    """Frames out of a stack of unpadded 1-D convolutions: floor((L - kernel) / stride) + 1 per layer,
    for an int or a tensor of lengths (``HubertPreTrainedModel._get_feat_extract_output_lengths`` does the
    same sum over the whole encoder; this also serves one layer and the config alone, without a model)."""
    length = num_samples
    for kernel, stride in zip(kernels, strides):
        length = (length - kernel) // stride + 1
    return length


def receptive_field(kernels: Sequence[int], strides: Sequence[int]) -> int:
    """Waveform samples one output frame of a stack of unpadded 1-D convolutions sees (400 for HuBERT's)."""
    samples = 1
    for kernel, stride in reversed(list(zip(kernels, strides))):
        samples = (samples - 1) * stride + kernel
    return samples


class GMPConfigMixin:
    r"""The fields of the emotion/gender heads and frame-level GMP heads (GMP-TL, arXiv 2405.02151),
    added to an encoder family's configuration (HuBERT, WavLM, wav2vec 2.0).

    Every encoder field (sizes, conv stack, SpecAugment, ``use_weighted_layer_sum``,
    ``classifier_proj_size``) keeps its meaning in the family's configuration. The emotion classes are
    described by the standard ``id2label`` / ``label2id`` (the ``audio-classification`` pipeline reads
    them), so they describe the emotion head only.

    Args:
        gender_labels (`Sequence[str]`, *optional*, defaults to `("female", "male")`):
            Classes of the utterance-level speaker-gender head, in label-id order.
        gmp_cluster_sizes (`Sequence[int]`, *optional*, defaults to `(50, 100, 500)`):
            Number of GMP classes of each frame head, one head per pseudo-label scale. With the
            quantizer's ``gender_mode="offset"`` a scale of K clusters has 2K classes; the recipes set
            this from the quantizer. Empty means no frame heads (MTL and stage-2 models).
        pooling (`str`, *optional*, defaults to `"mean"`):
            How frames become an utterance embedding: `"mean"` (mean over valid frames; ours),
            `"attentive"` (softmax-weighted mean with a learned score per frame) or `"statistics"` (mean and
            standard deviation over valid frames, x-vector style: an embedding twice as wide).
        emotion_input (`str`, *optional*, defaults to `"projected"`):
            The frames the emotion pooling reads: `"projected"` (the last layer, or the learned weighted sum of
            all layers with ``use_weighted_layer_sum``, projected to ``classifier_proj_size``) or
            `"all_layers"` (every hidden state, the transformer's input and each layer's output,
            concatenated per frame without projection, ours: with ``pooling="statistics"`` the head reads
            each layer's mean and standard deviation, as a linear probe of the encoder does; the embedding
            is ``(num_hidden_layers + 1) * hidden_size`` wide, twice that with statistics).
        emotion_head (`str`, *optional*, defaults to `"linear"`):
            `"linear"` (softmax classifier) or `"am_softmax"` (additive-margin softmax, stage 2).
        am_margin (`float`, *optional*, defaults to 0.2):
            AM-Softmax margin subtracted from the target-class cosine, in training only.
        am_scale (`float`, *optional*, defaults to 30.0):
            AM-Softmax scale applied to the cosines (training and inference).
        emotion_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the utterance emotion loss.
        gender_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the utterance gender loss in the multi-task objective. With 0 the gender task does
            not reach the encoder or the emotion head (see ``gender_probe``).
        gender_probe (`bool`, *optional*, defaults to `True`):
            With ``gender_loss_weight=0``, whether the gender head is still trained, as a probe on detached
            inputs. The recipes turn it off when they refit the head at the end of a stage (their default,
            ours): a probe's gradients share the Trainer's gradient-norm clipping with the encoder's, so it
            would move the emotion training after all.
        gmp_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the frame-level GMP loss, which is the mean of the per-scale cross-entropies.
        gmp_loss_frames (`str`, *optional*, defaults to `"all"`):
            Frames that carry the GMP loss: `"all"` valid frames (our default; the paper does not say)
            or `"masked"` frames only, HuBERT-style: the model draws ``mask_time_prob`` span masks
            itself, replaces those frames by the mask embedding and scores only them.
        gender_input (`str`, *optional*, defaults to `"embedding"`):
            What the gender head reads: `"embedding"` (the pooled utterance embedding of the emotion head)
            or `"statistics"` (mean and standard deviation over the valid frames of hidden layer
            ``gender_layer``, x-vector style; the recipes' choice, ours: speaker traits sit in the lower
            layers and a mean alone hides much of them).
        gender_layer (`int`, *optional*, defaults to 0):
            Hidden layer whose statistics the gender head reads with ``gender_input="statistics"``
            (0 = the transformer's input, the projected CNN features).
        gender_spectral_features (`bool`, *optional*, defaults to `False`):
            Whether the gender head also reads the mean and standard deviation of short-time spectral features
            of the waveform (40 log-mel bands, 20 MFCCs and their deltas per encoder frame; ours). Their weights
            are never trained by gradient (zero until then, so a training loss sees the gender head as without
            them): the recipes' closed-form refit sets them with the rest of the head at the end of a stage. A
            spectral envelope tells a speaker's gender to new speakers better than an encoder that has heard
            few speakers does.
        gender_head_trained (`bool`, *optional*, defaults to `False`):
            Whether the gender head was trained on this encoder's embeddings (the recipes set it when the
            training data had genders). The pipeline refuses ``return_gender=True`` while it is false,
            rather than report an untrained head's coin flip.
        kwargs:
            Passed on to [`HubertConfig`].
    """

    # Per-frame outputs stay out of the Trainer's gathered eval predictions (emotion + gender logits only).
    keys_to_ignore_at_inference: ClassVar[list[str]] = [
        "gmp_logits",
        "window_logits",
        "window_mask",
        "frame_mask",
        "hidden_states",
        "attentions",
    ]

    def __init__(
        self,
        gender_labels: Sequence[str] = ("female", "male"),
        gmp_cluster_sizes: Sequence[int] = (50, 100, 500),
        pooling: str = "mean",
        emotion_input: str = "projected",
        emotion_head: str = "linear",
        am_margin: float = 0.2,
        am_scale: float = 30.0,
        emotion_loss_weight: float = 1.0,
        gender_loss_weight: float = 1.0,
        gender_probe: bool = True,
        gmp_loss_weight: float = 1.0,
        gmp_loss_frames: str = "all",
        gender_input: str = "embedding",
        gender_layer: int = 0,
        gender_spectral_features: bool = False,
        gender_head_trained: bool = False,
        **kwargs,
    ):
        self.gender_labels = [str(label) for label in gender_labels]
        self.gmp_cluster_sizes = [int(size) for size in gmp_cluster_sizes]
        self.pooling = pooling
        self.emotion_input = emotion_input
        self.emotion_head = emotion_head
        self.am_margin = float(am_margin)
        self.am_scale = float(am_scale)
        self.emotion_loss_weight = float(emotion_loss_weight)
        self.gender_loss_weight = float(gender_loss_weight)
        self.gender_probe = bool(gender_probe)
        self.gmp_loss_weight = float(gmp_loss_weight)
        self.gmp_loss_frames = gmp_loss_frames
        self.gender_input = gender_input
        self.gender_layer = int(gender_layer)
        self.gender_spectral_features = bool(gender_spectral_features)
        self.gender_head_trained = bool(gender_head_trained)
        super().__init__(**kwargs)
        self._check_heads()

    def _check_heads(self) -> None:
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, got {self.pooling!r}")
        if self.emotion_input not in EMOTION_INPUTS:
            raise ValueError(f"emotion_input must be one of {EMOTION_INPUTS}, got {self.emotion_input!r}")
        if self.emotion_head not in EMOTION_HEADS:
            raise ValueError(f"emotion_head must be one of {EMOTION_HEADS}, got {self.emotion_head!r}")
        if self.gmp_loss_frames not in GMP_LOSS_FRAMES:
            raise ValueError(f"gmp_loss_frames must be one of {GMP_LOSS_FRAMES}, got {self.gmp_loss_frames!r}")
        if self.gender_input not in GENDER_INPUTS:
            raise ValueError(f"gender_input must be one of {GENDER_INPUTS}, got {self.gender_input!r}")
        if not 0 <= self.gender_layer <= self.num_hidden_layers:
            raise ValueError(f"gender_layer must be in [0, {self.num_hidden_layers}], got {self.gender_layer}")
        if len(self.gender_labels) < 2:
            raise ValueError(f"gender_labels needs at least two classes, got {self.gender_labels}")
        if any(size < 2 for size in self.gmp_cluster_sizes):
            raise ValueError(f"every GMP scale needs at least 2 classes, got {self.gmp_cluster_sizes}")
        if self.am_scale <= 0 or not 0 <= self.am_margin < 1:
            raise ValueError(f"need am_scale > 0 and 0 <= am_margin < 1, got {self.am_scale}, {self.am_margin}")
        weights = (self.emotion_loss_weight, self.gender_loss_weight, self.gmp_loss_weight)
        if any(weight < 0 for weight in weights):
            raise ValueError(f"loss weights must be >= 0, got {weights}")

    @property
    def gender2id(self) -> dict[str, int]:
        return {label: index for index, label in enumerate(self.gender_labels)}

    @property
    def min_input_samples(self) -> int:
        """Fewest waveform samples that give one encoder frame (400 at 16 kHz: 25 ms)."""
        return receptive_field(self.conv_kernel, self.conv_stride)

    def num_frames(self, num_samples: int) -> int:
        """Encoder frames for a clip of ``num_samples`` samples, 0 for clips shorter than one frame."""
        num_samples = int(num_samples)
        if num_samples < self.min_input_samples:
            return 0
        return conv_output_length(num_samples, self.conv_kernel, self.conv_stride)


class HubertGMPConfig(GMPConfigMixin, HubertConfig):
    """HuBERT with the GMP-TL heads (see :class:`GMPConfigMixin` for the fields)."""

    model_type = "hubert_gmp"
    __init__ = GMPConfigMixin.__init__  # in the class body, so that the config machinery keeps it


class WavLMGMPConfig(GMPConfigMixin, WavLMConfig):
    """WavLM with the GMP-TL heads (see :class:`GMPConfigMixin` for the fields)."""

    model_type = "wavlm_gmp"
    __init__ = GMPConfigMixin.__init__  # in the class body, so that the config machinery keeps it


class Wav2Vec2GMPConfig(GMPConfigMixin, Wav2Vec2Config):
    """wav2vec 2.0 with the GMP-TL heads (see :class:`GMPConfigMixin` for the fields)."""

    model_type = "wav2vec2_gmp"
    __init__ = GMPConfigMixin.__init__  # in the class body, so that the config machinery keeps it


# the encoder family of a configuration's model_type (a plain encoder's or one of ours)
GMP_CONFIGS = {"hubert": HubertGMPConfig, "wavlm": WavLMGMPConfig, "wav2vec2": Wav2Vec2GMPConfig}


__all__ = [
    "GMP_CONFIGS",
    "GMPConfigMixin",
    "HubertGMPConfig",
    "Wav2Vec2GMPConfig",
    "WavLMGMPConfig",
    "conv_output_length",
]
