"""HuBERT for speech emotion recognition with gender and GMP heads (GMP-TL, arXiv 2405.02151).

This file is copied next to every saved checkpoint (``trust_remote_code``), so it imports only
``torch``, ``transformers`` and its sibling files, relatively.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    HubertModel,
    HubertPreTrainedModel,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
    Wav2Vec2PreTrainedModel,
    WavLMModel,
    WavLMPreTrainedModel,
)
from transformers import initialization as init
from transformers.dynamic_module_utils import get_relative_import_files
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.hubert.modeling_hubert import _compute_mask_indices
from transformers.utils import ModelOutput, logging
from transformers.utils.output_capturing import capture_outputs

from .configuration_hubert_gmp import (
    HubertGMPConfig,
    Wav2Vec2GMPConfig,
    WavLMGMPConfig,
    conv_output_length,
    receptive_field,
)
from .spectral import GENDER_FEATURES, float32_region, spectral_frames

logger = logging.get_logger(__name__)

IGNORE_INDEX = -100


@dataclass
class GMPEmotionOutput(ModelOutput):
    """Outputs of :class:`HubertForGMPEmotion`.

    Args:
        loss: Weighted sum of the loss terms whose labels were given (emotion, gender, GMP).
        logits: Emotion logits `(batch, num_labels)`. For the AM-Softmax head these are the scaled
            cosines without margin, so a softmax over them is meaningful at inference.
        gender_logits: Speaker-gender logits `(batch, len(gender_labels))`.
        gmp_logits: One `(batch, frames, classes)` tensor per GMP scale; None without frame heads
            (so that generic code, such as the stock pipeline's batching, never meets an empty tuple).
        window_logits: Emotion logits of consecutive windows of ``window_frames`` encoder frames
            `(batch, windows, num_labels)`, only when ``window_frames`` is given. Each window goes
            through the utterance path (same pooling, same head), so a window spanning the whole clip
            gives exactly ``logits``; ``window_frames=1`` gives one answer per 20 ms frame.
        window_mask: `(batch, windows)` boolean mask of windows holding at least one valid frame (the
            logits of the others, windows of padding only, are zeros).
        frame_mask: `(batch, frames)` boolean mask of valid (non-padded) encoder frames.
        hidden_states: Encoder hidden states (embedding output + one per layer) if requested.
        attentions: Attention weights per layer if requested.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    gender_logits: torch.FloatTensor | None = None
    gmp_logits: tuple[torch.FloatTensor, ...] | None = None
    window_logits: torch.FloatTensor | None = None
    window_mask: torch.BoolTensor | None = None
    frame_mask: torch.BoolTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def masked_group_norm(hidden: torch.Tensor, valid_frames: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """``norm(hidden)`` with statistics over each item's first ``valid_frames`` frames only.

    HuBERT-base normalises its first conv layer over the whole time axis, so zero padding would change
    every frame of a padded clip; restricting the statistics to valid frames makes batching exact. Each
    padded item goes through the fused kernel on its valid frames (padded frames come out as zeros; no
    valid output frame of the later conv layers reads them), which is faster than masked reductions.
    """
    frames = hidden.shape[-1]
    lengths = valid_frames.clamp(max=frames).tolist()
    if min(lengths) == frames:
        return norm(hidden)
    items = []
    for item, length in zip(hidden, lengths):
        normalized = F.group_norm(item[None, :, :length], norm.num_groups, norm.weight, norm.bias, norm.eps)
        items.append(F.pad(normalized, (0, frames - length)))
    return torch.cat(items)


@dataclass
class GMPFrameOutput(ModelOutput):
    """What the utterance heads read, per encoder frame (see :meth:`HubertForGMPEmotion.encode_frames`).

    Args:
        emotion_frames: The frames the emotion pooling reads `(batch, frames, model.emotion_frame_size)`:
            projected top frames, or every layer concatenated (``config.emotion_input``).
        gender_frames: The frames whose statistics the gender head reads `(batch, frames, dim)`: those of
            ``config.gender_layer`` (``gender_input="statistics"``), then the spectral features
            (``gender_spectral_features``), concatenated; None when it reads neither.
        frame_mask: `(batch, frames)` boolean mask of valid frames.
    """

    emotion_frames: torch.FloatTensor | None = None
    gender_frames: torch.FloatTensor | None = None
    frame_mask: torch.BoolTensor | None = None


class LengthAwareGroupNormConvLayer(nn.Module):
    """HuBERT's first conv layer (conv, GroupNorm, activation) with padding-exact GroupNorm.

    It adopts the original layer's modules, so parameter names and checkpoints are unchanged. It is
    not gradient-checkpointed (the lengths would be gone when the backward pass recomputes it).
    """

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.conv = layer.conv
        self.layer_norm = layer.layer_norm
        self.activation = layer.activation

    def forward(self, hidden_states: torch.Tensor, valid_samples: torch.Tensor | None = None) -> torch.Tensor:
        hidden_states = self.conv(hidden_states)
        if valid_samples is None:
            hidden_states = self.layer_norm(hidden_states)
        else:
            valid_frames = conv_output_length(valid_samples, self.conv.kernel_size, self.conv.stride)
            hidden_states = masked_group_norm(hidden_states, valid_frames, self.layer_norm)
        return self.activation(hidden_states)


class LengthAwareFeatureEncoder(nn.Module):
    """An encoder family's conv feature encoder (adopted, so parameter names are unchanged), told each
    clip's valid length, which the GroupNorm layer uses."""

    def __init__(self, encoder: nn.Module, feat_extract_norm: str):
        super().__init__()
        self.conv_layers = encoder.conv_layers
        if feat_extract_norm == "group":
            self.conv_layers[0] = LengthAwareGroupNormConvLayer(self.conv_layers[0])
        self.gradient_checkpointing = False
        self._requires_grad = True

    def _freeze_parameters(self):
        for param in self.parameters():
            param.requires_grad = False
        self._requires_grad = False

    def forward(self, input_values: torch.Tensor, valid_samples: torch.Tensor | None = None) -> torch.Tensor:
        hidden_states = input_values[:, None]
        if self._requires_grad and self.training:
            hidden_states.requires_grad = True  # as the stock encoder: gradient checkpointing needs it
        for index, conv_layer in enumerate(self.conv_layers):
            if index == 0 and isinstance(conv_layer, LengthAwareGroupNormConvLayer):
                hidden_states = conv_layer(hidden_states, valid_samples)
            else:
                hidden_states = conv_layer(hidden_states)
        return hidden_states


class LengthAwareEncoderMixin:
    """An encoder model (``HubertModel``, ``WavLMModel``, ``Wav2Vec2Model``) whose forward takes the clips'
    valid lengths and hands them to the feature encoder.

    The same modules and parameter names as the stock model (checkpoints load unchanged); the forward
    repeats the stock one (feature encoder, projection, masking, transformer) with the lengths passed
    explicitly, under the same output capturing that fills ``hidden_states`` and ``attentions``.
    """

    MASK_WITH_ATTENTION = True  # whether SpecAugment sees the attention mask (as the stock forward does)

    def __init__(self, config):
        super().__init__(config)
        if getattr(config, "add_adapter", False):
            raise ValueError("encoders with an adapter (add_adapter=True) are not supported: frames would not be 20 ms")
        stock_encoder = type(self.feature_extractor)(config)
        self.feature_extractor = LengthAwareFeatureEncoder(stock_encoder, config.feat_extract_norm)

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        valid_samples: torch.Tensor | None = None,
        mask_time_indices: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        extract_features = self.feature_extractor(input_values, valid_samples).transpose(1, 2)
        if attention_mask is not None:
            attention_mask = self._get_feature_vector_attention_mask(extract_features.shape[1], attention_mask)
        hidden_states = self.feature_projection(extract_features)
        if isinstance(hidden_states, tuple):  # wav2vec 2.0 and WavLM also return the normalised features
            hidden_states = hidden_states[0]
        masking = {"attention_mask": attention_mask} if self.MASK_WITH_ATTENTION else {}
        hidden_states = self._mask_hidden_states(hidden_states, mask_time_indices=mask_time_indices, **masking)
        encoder_outputs = self.encoder(
            hidden_states,
            attention_mask=attention_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            **kwargs,
        )
        return BaseModelOutput(last_hidden_state=encoder_outputs[0])

    def frame_mask(self, input_values: torch.Tensor, sample_lengths: torch.Tensor) -> torch.Tensor:
        """`(batch, frames)`: which encoder frames of the padded batch hold audio."""
        frames = int(self._get_feat_extract_output_lengths(input_values.shape[1]))
        valid = self._get_feat_extract_output_lengths(sample_lengths)
        return torch.arange(frames, device=input_values.device)[None, :] < valid[:, None]

    def encode(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None, sample_lengths: torch.Tensor, **kwargs
    ) -> BaseModelOutput:
        """The forward with the batch's valid lengths passed to the GroupNorm conv layer; a batch without
        padding runs unmasked (attention's faster kernel)."""
        if attention_mask is not None and bool((sample_lengths == input_values.shape[1]).all()):
            attention_mask = None
        valid_samples = sample_lengths if attention_mask is not None else None
        return self(
            input_values, attention_mask=attention_mask, valid_samples=valid_samples, return_dict=True, **kwargs
        )


class LengthAwareHubertModel(LengthAwareEncoderMixin, HubertModel):
    MASK_WITH_ATTENTION = False  # the stock HuBERT forward masks without it


class LengthAwareWavLMModel(LengthAwareEncoderMixin, WavLMModel):
    pass


class LengthAwareWav2Vec2Model(LengthAwareEncoderMixin, Wav2Vec2Model):
    pass


def weighted_sum(weights: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """``weights`` `(batch, T)` times ``frames`` `(batch, T, dim)`, summed over T."""
    return torch.bmm(weights.unsqueeze(1), frames).squeeze(1)


class AttentivePooling(nn.Module):
    """Softmax-weighted mean of the valid frames, one learned score per frame."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.score = nn.Linear(hidden_size, 1)

    def weights(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(frames).squeeze(-1)
        return scores.masked_fill(~frame_mask, torch.finfo(scores.dtype).min).softmax(dim=-1)

    def forward(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        return weighted_sum(self.weights(frames, frame_mask), frames)


class MeanPooling(nn.Module):
    """Mean of the valid frames (``frame_mask`` `(batch, T)`)."""

    def weights(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        mask = frame_mask.to(frames.dtype)
        return mask / mask.sum(dim=-1, keepdim=True).clamp(min=1.0)

    def forward(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        return weighted_sum(self.weights(frames, frame_mask), frames)


def mean_std_pooling(frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """Concatenated mean and standard deviation of the valid frames `(batch, 2 * dim)`."""
    weights = MeanPooling().weights(frames, frame_mask).unsqueeze(-1)
    mean = (weights * frames).sum(dim=1)
    variance = (weights * (frames - mean.unsqueeze(1)).square()).sum(dim=1)
    return torch.cat([mean, variance.clamp(min=1e-6).sqrt()], dim=-1)


class StatisticsPooling(nn.Module):
    """Mean and standard deviation of the valid frames (:func:`mean_std_pooling`), as a pooling module."""

    def forward(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        return mean_std_pooling(frames, frame_mask)


def split_windows(frames: torch.Tensor, frame_mask: torch.Tensor, window_frames: int):
    """Consecutive windows of ``window_frames`` frames as a batch of their own: `(batch * windows,
    window_frames, dim)` frames and mask, and the `(batch, windows)` mask of windows with a valid frame.

    Pooling this batch is the utterance computation applied to each window, in memory that grows with the
    clip's length only (never with length x windows)."""
    if window_frames < 1:
        raise ValueError(f"window_frames must be >= 1, got {window_frames}")
    batch, length, dim = frames.shape
    windows = (length + window_frames - 1) // window_frames  # (no max(): keeps the length symbolic in export)
    pad = windows * window_frames - length
    window_batch = F.pad(frames, (0, 0, 0, pad)).reshape(batch * windows, window_frames, dim)
    window_mask = F.pad(frame_mask, (0, pad)).reshape(batch * windows, window_frames)
    return window_batch, window_mask, window_mask.any(dim=-1).reshape(batch, windows)


class AMSoftmaxHead(nn.Module):
    """Additive-margin softmax classifier (Wang et al., 2018): ``logits = scale * cos(x, w_c)``.

    ``forward`` returns the plain scaled cosines; :meth:`with_margin` subtracts ``scale * margin``
    from the target class, which the model does for the training loss only.
    """

    def __init__(self, in_features: int, num_labels: int, scale: float, margin: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_labels, in_features))
        self.scale = scale
        self.margin = margin

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.scale * F.linear(F.normalize(embeddings, dim=-1), F.normalize(self.weight, dim=-1))

    def with_margin(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        valid = labels != IGNORE_INDEX
        target = F.one_hot(labels.clamp(min=0), logits.shape[-1]).to(logits.dtype) * valid[:, None]
        return logits - self.scale * self.margin * target


class GMPEmotionMixin:
    """Encoder + utterance emotion head + utterance gender head + one frame head per GMP scale, for any
    encoder family (HuBERT, WavLM, wav2vec 2.0; the family classes below add only their encoder).

    Frames (the top layer or a learned sum of layers projected to ``classifier_proj_size``, or every layer
    concatenated: ``emotion_input``) are pooled over valid frames into an utterance embedding that feeds the
    emotion (linear or AM-Softmax) and gender heads; the GMP heads classify every encoder frame (20 ms) of the
    top layer (or layer sum) into the pseudo-label classes of their scale.
    """

    ENCODER: ClassVar[type]  # the family's length-aware encoder model
    # The loss is a mean per batch over terms with different normalisers (clips, frames); the Trainer
    # must average it over gradient-accumulation steps itself rather than pass num_items_in_batch.
    accepts_loss_kwargs = False
    CUSTOM_PIPELINES: ClassVar[dict[str, dict]] = {
        "audio-classification": {
            "impl": "pipeline_hubert_gmp.SpeechEmotionPipeline",
            "pt": ["AutoModelForAudioClassification"],
            "type": "audio",
        }
    }

    def __init__(self, config):
        super().__init__(config)
        if config.gmp_loss_frames == "masked" and not (config.apply_spec_augment and config.mask_time_prob > 0):
            raise ValueError("gmp_loss_frames='masked' needs apply_spec_augment=True and mask_time_prob > 0")
        setattr(self, self.base_model_prefix, self.ENCODER(config))  # hubert / wavlm / wav2vec2, as pre-trained
        if config.use_weighted_layer_sum:
            self.layer_weights = nn.Parameter(torch.ones(config.num_hidden_layers + 1) / (config.num_hidden_layers + 1))
        if config.emotion_input == "projected":
            self.projector = nn.Linear(config.hidden_size, config.classifier_proj_size)
        if config.pooling == "attentive":
            self.pooler = AttentivePooling(self.emotion_frame_size)
        else:
            self.pooler = StatisticsPooling() if config.pooling == "statistics" else MeanPooling()
        self.dropout = nn.Dropout(config.final_dropout)
        if config.emotion_head == "am_softmax":
            self.classifier = AMSoftmaxHead(self.embedding_size, config.num_labels, config.am_scale, config.am_margin)
        else:
            self.classifier = nn.Linear(self.embedding_size, config.num_labels)
        gender_features = self.embedding_size if config.gender_input == "embedding" else 2 * config.hidden_size
        self.gender_classifier = nn.Linear(gender_features, len(config.gender_labels))
        self.gmp_heads = nn.ModuleList(nn.Linear(config.hidden_size, size) for size in config.gmp_cluster_sizes)
        if config.gender_spectral_features:
            # set in closed form by the refit, never by gradient: a buffer, because `from_pretrained` makes every
            # parameter trainable again (a frozen nn.Parameter was trained by AdamW and its large gradients
            # changed the clipping of all others)
            spectral_weight = torch.zeros(len(config.gender_labels), 2 * self.spectral_features)
            self.register_buffer("spectral_gender_weight", spectral_weight)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, AMSoftmaxHead):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
        elif isinstance(module, GMPEmotionMixin):
            if hasattr(module, "layer_weights"):
                init.constant_(module.layer_weights, 1.0 / (self.config.num_hidden_layers + 1))
            if hasattr(module, "spectral_gender_weight"):
                init.zeros_(module.spectral_gender_weight)

    @property
    def encoder_model(self) -> nn.Module:
        """The encoder (``self.hubert``, ``self.wavlm`` or ``self.wav2vec2``, named as in pre-trained weights)."""
        return getattr(self, self.base_model_prefix)

    def freeze_feature_encoder(self):
        """Stop gradients into the convolutional feature encoder (standard for HuBERT fine-tuning)."""
        self.encoder_model.feature_extractor._freeze_parameters()

    def freeze_base_model(self):
        """Train the heads only."""
        for param in self.encoder_model.parameters():
            param.requires_grad = False

    @property
    def emotion_frame_size(self) -> int:
        """Width of the frames the emotion pooling reads (``emotion_input``)."""
        if self.config.emotion_input == "all_layers":
            return (self.config.num_hidden_layers + 1) * self.config.hidden_size
        return self.config.classifier_proj_size

    @property
    def embedding_size(self) -> int:
        """Width of the pooled utterance embedding the emotion head reads."""
        return self.emotion_frame_size * (2 if self.config.pooling == "statistics" else 1)

    @property
    def spectral_features(self) -> int:
        """Spectral features per frame the gender head reads (:func:`spectral_frames`' defaults)."""
        return GENDER_FEATURES

    def num_frames(self, num_samples: torch.Tensor | int) -> torch.Tensor | int:
        """Encoder frames for clips of ``num_samples`` samples (the model's conv-length arithmetic)."""
        return self._get_feat_extract_output_lengths(num_samples)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        gender_labels: torch.Tensor | None = None,
        gmp_labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        window_frames: int | None = None,
        return_dict: bool | None = None,
    ) -> GMPEmotionOutput | tuple:
        r"""
        input_values (`torch.FloatTensor` of shape `(batch, samples)`):
            16 kHz mono waveforms, right-padded, as made by `Wav2Vec2FeatureExtractor`.
        attention_mask (`torch.LongTensor` of shape `(batch, samples)`, *optional*):
            1 for real samples, 0 for padding. Outputs do not depend on the padding.
        labels (`torch.LongTensor` of shape `(batch,)`, *optional*):
            Emotion class ids (-100 ignores an utterance).
        gender_labels (`torch.LongTensor` of shape `(batch,)`, *optional*):
            Index into `config.gender_labels` (-100 ignores an utterance).
        gmp_labels (`torch.LongTensor` of shape `(batch, frames, num_scales)`, *optional*):
            GMP class per encoder frame and scale, -100 for padding; `frames` is the encoder frame count
            of the padded batch (`model.num_frames(input_values.shape[1])`).
        window_frames (`int`, *optional*):
            Also return the emotion logits of consecutive windows of this many encoder frames (the
            pipeline's timeline), computed exactly as the utterance logits are, window by window.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        sample_lengths = self._check_inputs(input_values, attention_mask)
        frame_mask = self.encoder_model.frame_mask(input_values, sample_lengths)
        frames = frame_mask.shape[1]
        if gmp_labels is not None:
            gmp_labels = self._check_gmp_labels(gmp_labels, frames).masked_fill(~frame_mask[..., None], IGNORE_INDEX)

        mask_time_indices = None
        if self.training and gmp_labels is not None and self.config.gmp_loss_frames == "masked":
            mask_time_indices = torch.from_numpy(
                _compute_mask_indices(
                    (input_values.shape[0], frames),
                    mask_prob=self.config.mask_time_prob,
                    mask_length=self.config.mask_time_length,
                    attention_mask=frame_mask.long().cpu(),
                    min_masks=self.config.mask_time_min_masks,
                )
            ).to(device=input_values.device, dtype=torch.bool)
            gmp_labels = gmp_labels.masked_fill(~mask_time_indices[..., None], IGNORE_INDEX)

        outputs = self.encoder_model.encode(
            input_values,
            attention_mask,
            sample_lengths,
            mask_time_indices=mask_time_indices,
            output_attentions=output_attentions,
            output_hidden_states=True if self._needs_hidden_states else output_hidden_states,
        )

        hidden = self._top_hidden(outputs)
        gender_frames = self._gender_frames(outputs.hidden_states, input_values, frame_mask)
        logits, gender_inputs, gender_logits, window_logits, window_mask = self._utterance_heads(
            self._emotion_frames(outputs, hidden), gender_frames, frame_mask, window_frames
        )
        gmp_logits = tuple(head(hidden) for head in self.gmp_heads)

        loss = self._loss(gender_inputs, logits, gender_logits, gmp_logits, labels, gender_labels, gmp_labels)
        output = GMPEmotionOutput(
            loss=loss,
            logits=logits,
            gender_logits=gender_logits,
            gmp_logits=gmp_logits or None,
            window_logits=window_logits,
            window_mask=window_mask,
            frame_mask=frame_mask,
            hidden_states=outputs.hidden_states if output_hidden_states else None,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()

    @property
    def _needs_hidden_states(self) -> bool:
        return (
            self.config.use_weighted_layer_sum
            or self.config.emotion_input == "all_layers"
            or self.config.gender_input == "statistics"
        )

    def encode_frames(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> GMPFrameOutput:
        """The frames the utterance heads read, without the heads: with :meth:`classify_frames` this is
        ``forward`` split in two, so frames of a long recording can be encoded chunk by chunk, stitched,
        and classified as one clip."""
        sample_lengths = self._check_inputs(input_values, attention_mask)
        frame_mask = self.encoder_model.frame_mask(input_values, sample_lengths)
        outputs = self.encoder_model.encode(
            input_values, attention_mask, sample_lengths, output_hidden_states=self._needs_hidden_states
        )
        return GMPFrameOutput(
            emotion_frames=self._emotion_frames(outputs),
            gender_frames=self._gender_frames(outputs.hidden_states, input_values, frame_mask),
            frame_mask=frame_mask,
        )

    def classify_frames(
        self,
        emotion_frames: torch.Tensor,
        frame_mask: torch.Tensor,
        gender_frames: torch.Tensor | None = None,
        window_frames: int | None = None,
    ) -> GMPEmotionOutput:
        """Emotion, gender (and window) logits from the frames :meth:`encode_frames` gives."""
        logits, _, gender_logits, window_logits, window_mask = self._utterance_heads(
            emotion_frames, gender_frames, frame_mask, window_frames
        )
        return GMPEmotionOutput(
            logits=logits,
            gender_logits=gender_logits,
            window_logits=window_logits,
            window_mask=window_mask,
            frame_mask=frame_mask,
        )

    def unpadded_outputs(
        self, input_values: torch.Tensor, window_frames: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Emotion, gender, window (``window_frames`` frames each) and per-frame emotion logits of a batch
        of equal-length clips: ``forward`` without padding, labels or checks, so that it traces (what
        ``gmp-tl export-onnx`` exports). A frame's logits are its one-frame window's."""
        outputs = self.encoder_model(input_values, output_hidden_states=self._needs_hidden_states, return_dict=True)
        emotion_frames = self._emotion_frames(outputs)
        frame_mask = torch.ones(emotion_frames.shape[:2], dtype=torch.bool, device=emotion_frames.device)
        gender_frames = self._gender_frames(outputs.hidden_states, input_values, frame_mask)
        logits, _, gender_logits, window_logits, _ = self._utterance_heads(
            emotion_frames, gender_frames, frame_mask, window_frames
        )
        frame_logits, _ = self._window_logits(emotion_frames, frame_mask, 1)
        return logits, gender_logits, window_logits, frame_logits

    def _utterance_heads(self, emotion_frames, gender_frames, frame_mask, window_frames):
        """Pooling and the emotion and gender heads; each window (if asked) goes the emotion path alone."""
        embeddings = self.dropout(self.pooler(emotion_frames, frame_mask))
        logits = self.classifier(embeddings)
        gender_inputs = self._gender_inputs(embeddings, gender_frames, frame_mask)
        gender_logits = self._gender_logits(gender_inputs)
        window_logits = window_mask = None
        if window_frames is not None:
            window_logits, window_mask = self._window_logits(emotion_frames, frame_mask, window_frames)
        return logits, gender_inputs, gender_logits, window_logits, window_mask

    def _window_logits(self, emotion_frames, frame_mask, window_frames):
        """Emotion logits of consecutive windows of ``window_frames`` frames, each pooled as a clip of its own,
        and the mask of windows with a valid frame."""
        window_batch, window_frame_mask, window_mask = split_windows(emotion_frames, frame_mask, window_frames)
        window_logits = self.classifier(self.dropout(self.pooler(window_batch, window_frame_mask)))
        return window_logits.view(*window_mask.shape, -1).masked_fill(~window_mask[..., None], 0.0), window_mask

    def _gender_frames(
        self, hidden_states: tuple[torch.Tensor, ...] | None, input_values: torch.Tensor, frame_mask: torch.Tensor
    ) -> torch.Tensor | None:
        """The frames whose statistics the gender head reads: hidden layer ``gender_layer``
        (``gender_input="statistics"``), then the spectral features (``gender_spectral_features``)."""
        frames = []
        if self.config.gender_input == "statistics":
            frames.append(hidden_states[self.config.gender_layer])
        if self.config.gender_spectral_features:
            window = receptive_field(self.config.conv_kernel, self.config.conv_stride)
            spectral = spectral_frames(input_values, window, math.prod(self.config.conv_stride), frame_mask)
            frames = [*(layer.float() for layer in frames), spectral]  # float32, as the spectral frames are
        return torch.cat(frames, dim=-1) if frames else None

    def _gender_inputs(
        self, embeddings: torch.Tensor, gender_frames: torch.Tensor | None, frame_mask: torch.Tensor
    ) -> torch.Tensor:
        """The gender head's input: the utterance embedding or the statistics of ``gender_layer``, then
        the statistics of the spectral features (each part pooled on its own, so the two stay apart)."""
        spectral = self.spectral_features if self.config.gender_spectral_features else 0
        if self.config.gender_input == "embedding":
            parts = [embeddings]
        else:
            parts = [mean_std_pooling(gender_frames[..., : gender_frames.shape[-1] - spectral], frame_mask)]
        if spectral:
            parts = [parts[0].float(), mean_std_pooling(gender_frames[..., -spectral:], frame_mask)]
        return torch.cat(parts, dim=-1)

    def _gender_logits(self, gender_inputs: torch.Tensor) -> torch.Tensor:
        """The trained head on its part of the input, plus the closed-form spectral weights on theirs."""
        trained = self.gender_classifier.in_features
        logits = self.gender_classifier(gender_inputs[..., :trained])
        if self.config.gender_spectral_features:
            with float32_region(gender_inputs.device):
                spectral = F.linear(gender_inputs[..., trained:].float(), self.spectral_gender_weight.float())
            logits = logits + spectral
        return logits

    @torch.no_grad()
    def set_gender_head(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Set the whole gender head from a linear classifier of :meth:`gender_features` (the refit)."""
        trained = self.gender_classifier.in_features
        head = self.gender_classifier
        head.weight.copy_(torch.as_tensor(weight[:, :trained], dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
        if self.config.gender_spectral_features:
            spectral = self.spectral_gender_weight
            spectral.copy_(torch.as_tensor(weight[:, trained:], dtype=spectral.dtype))
        elif weight.shape[1] != trained:
            raise ValueError(f"a gender head of {trained} inputs got {weight.shape[1]} weights")

    @torch.no_grad()
    def set_emotion_head(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Make the emotion head the linear classifier ``weight``, ``bias`` of :meth:`emotion_features` (the
        refit). An AM-Softmax head, which has no bias and reads cosines, is replaced by a linear one."""
        if weight.shape != (self.config.num_labels, self.embedding_size):
            raise ValueError(f"an emotion head of {self.embedding_size} inputs got weights {tuple(weight.shape)}")
        if isinstance(self.classifier, AMSoftmaxHead):
            device, dtype = self.classifier.weight.device, self.classifier.weight.dtype
            self.classifier = nn.Linear(self.embedding_size, self.config.num_labels).to(device=device, dtype=dtype)
            self.config.emotion_head = "linear"
        self.classifier.weight.copy_(torch.as_tensor(weight, dtype=self.classifier.weight.dtype))
        self.classifier.bias.copy_(torch.as_tensor(bias, dtype=self.classifier.bias.dtype))

    def emotion_features(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The emotion head's input (the pooled utterance embedding) for a batch, for the refit."""
        frames = self.encode_frames(input_values, attention_mask)
        return self.dropout(self.pooler(frames.emotion_frames, frames.frame_mask))

    def gender_features(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The gender head's input for a batch (the recipes refit the head on them after training)."""
        frames = self.encode_frames(input_values, attention_mask)
        heads = self._utterance_heads(frames.emotion_frames, frames.gender_frames, frames.frame_mask, None)
        return heads[1]

    def _emotion_frames(self, outputs: BaseModelOutput, top_hidden: torch.Tensor | None = None) -> torch.Tensor:
        """The frames the emotion pooling reads: the projected top frames (``top_hidden``, computed when not
        given), or every hidden state concatenated (``emotion_input="all_layers"``)."""
        if self.config.emotion_input == "all_layers":
            return torch.cat(outputs.hidden_states, dim=-1)
        return self.projector(self._top_hidden(outputs) if top_hidden is None else top_hidden)

    def _top_hidden(self, outputs: BaseModelOutput) -> torch.Tensor:
        """The frames the GMP heads (and a projected emotion input) read: the last layer, or the learned weighted
        sum of all layers."""
        if not self.config.use_weighted_layer_sum:
            return outputs.last_hidden_state
        weights = self.layer_weights.softmax(dim=-1).view(1, -1, 1, 1)
        return (torch.stack(outputs.hidden_states, dim=1) * weights).sum(dim=1)

    def layer_features(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None, layer: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame features after transformer layer ``layer`` (1-based as in fairseq; default: the last)
        and the valid-frame mask, without computing the layers above ``layer``.

        The encoder is truncated for the duration of the call, so do not run the same model object from
        another thread meanwhile.
        """
        layers = self.encoder_model.encoder.layers
        layer = len(layers) if layer is None else layer
        if not 1 <= layer <= len(layers):
            raise ValueError(f"layer must be in [1, {len(layers)}] for this {len(layers)}-layer encoder, got {layer}")
        sample_lengths = self._check_inputs(input_values, attention_mask)
        frame_mask = self.encoder_model.frame_mask(input_values, sample_lengths)
        self.encoder_model.encoder.layers = layers[:layer]
        try:
            outputs = self.encoder_model.encode(input_values, attention_mask, sample_lengths, output_hidden_states=True)
        finally:
            self.encoder_model.encoder.layers = layers
        return outputs.hidden_states[layer], frame_mask

    def _check_inputs(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Validate the waveform batch and return the valid length of each clip."""
        if input_values.dim() != 2:
            raise ValueError(
                f"input_values must be (batch, samples), got shape {tuple(input_values.shape)}; "
                "add a batch dimension for a single clip or downmix multi-channel audio first"
            )
        if attention_mask is None:
            lengths = torch.full((input_values.shape[0],), input_values.shape[1], device=input_values.device)
        else:
            if attention_mask.shape != input_values.shape:
                shapes = f"{tuple(attention_mask.shape)} != input_values shape {tuple(input_values.shape)}"
                raise ValueError(f"attention_mask shape {shapes}")
            lengths = attention_mask.sum(dim=-1).long()
        too_short = (lengths < self.config.min_input_samples).nonzero().flatten().tolist()
        if too_short:
            raise ValueError(
                f"clip(s) {too_short} have {lengths[too_short].tolist()} samples, fewer than one encoder frame "
                f"({self.config.min_input_samples} samples)"
            )
        return lengths

    def _check_gmp_labels(self, gmp_labels: torch.Tensor, frames: int) -> torch.Tensor:
        scales = len(self.config.gmp_cluster_sizes)
        if scales == 0:
            raise ValueError(
                "gmp_labels were given but this model has no GMP heads (config.gmp_cluster_sizes is empty)"
            )
        if gmp_labels.dim() != 3 or gmp_labels.shape[-1] != scales:
            raise ValueError(
                f"gmp_labels must be (batch, frames, {scales}) for scales {self.config.gmp_cluster_sizes}, "
                f"got shape {tuple(gmp_labels.shape)}"
            )
        if gmp_labels.shape[1] != frames:
            raise ValueError(
                f"gmp_labels has {gmp_labels.shape[1]} frames but the encoder gives {frames} for "
                "this batch; pad them with -100 to model.num_frames(input_values.shape[1])"
            )
        gmp_labels = gmp_labels.long()
        for scale, size in enumerate(self.config.gmp_cluster_sizes):
            _check_label_range(gmp_labels[..., scale], size, f"gmp_labels[..., {scale}]")
        return gmp_labels

    def _loss(self, gender_inputs, logits, gender_logits, gmp_logits, labels, gender_labels, gmp_labels):
        config = self.config
        terms = []
        if labels is not None and config.emotion_loss_weight > 0:
            labels = labels.long().view(-1)
            _check_label_range(labels, config.num_labels, "labels")
            if isinstance(self.classifier, AMSoftmaxHead) and self.training:
                logits = self.classifier.with_margin(logits, labels)
            terms.append(config.emotion_loss_weight * _cross_entropy(logits, labels))
        if gender_labels is not None:
            gender_labels = gender_labels.long().view(-1)
            _check_label_range(gender_labels, len(config.gender_labels), "gender_labels")
            if config.gender_loss_weight > 0:
                terms.append(config.gender_loss_weight * _cross_entropy(gender_logits, gender_labels))
            elif config.gender_probe:  # the gender head learns on detached inputs; the encoder gets no gradient
                terms.append(_cross_entropy(self._gender_logits(gender_inputs.detach()), gender_labels))
        if gmp_labels is not None and config.gmp_loss_weight > 0:
            per_scale = [
                _cross_entropy(scale_logits.flatten(0, 1), gmp_labels[..., scale].flatten())
                for scale, scale_logits in enumerate(gmp_logits)
            ]
            terms.append(config.gmp_loss_weight * torch.stack(per_scale).mean())
        return torch.stack(terms).sum() if terms else None

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs):
        """Save weights and config plus the code and a 16 kHz feature extractor, so that the folder
        loads with ``trust_remote_code=True`` (model and ``audio-classification`` pipeline) anywhere.

        transformers copies this file and the configuration and writes their ``auto_map`` entries (the
        classes are registered with ``register_for_auto_class``); added here are the ``AutoModel`` entry,
        the pipeline (its ``custom_pipelines`` entry and files) and the feature extractor.
        """
        # transformers maps a class to one auto class; this model also answers to AutoModel
        auto_model = f"{Path(__file__).stem}.{type(self).__name__}"
        self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), "AutoModel": auto_model}
        self.config.custom_pipelines = {task: dict(spec) for task, spec in self.CUSTOM_PIPELINES.items()}
        super().save_pretrained(save_directory, *args, **kwargs)
        if not kwargs.get("is_main_process", True):
            return
        pipeline_file = Path(__file__).parent / "pipeline_hubert_gmp.py"
        for source in [pipeline_file, *map(Path, get_relative_import_files(pipeline_file))]:
            shutil.copyfile(source, Path(save_directory) / source.name)
        if not (Path(save_directory) / "preprocessor_config.json").exists():
            logger.debug("no feature extractor saved with the model; writing the default 16 kHz one")
            default_feature_extractor().save_pretrained(save_directory)


class HubertForGMPEmotion(GMPEmotionMixin, HubertPreTrainedModel):
    """HuBERT with the GMP-TL heads (see :class:`GMPEmotionMixin`)."""

    config_class = HubertGMPConfig
    config: HubertGMPConfig
    ENCODER = LengthAwareHubertModel


class WavLMForGMPEmotion(GMPEmotionMixin, WavLMPreTrainedModel):
    """WavLM with the GMP-TL heads (see :class:`GMPEmotionMixin`)."""

    config_class = WavLMGMPConfig
    config: WavLMGMPConfig
    ENCODER = LengthAwareWavLMModel


class Wav2Vec2ForGMPEmotion(GMPEmotionMixin, Wav2Vec2PreTrainedModel):
    """wav2vec 2.0 with the GMP-TL heads (see :class:`GMPEmotionMixin`)."""

    config_class = Wav2Vec2GMPConfig
    config: Wav2Vec2GMPConfig
    ENCODER = LengthAwareWav2Vec2Model


# the emotion model of an encoder family (the part of a config's model_type before "_gmp")
GMP_MODELS = {"hubert": HubertForGMPEmotion, "wavlm": WavLMForGMPEmotion, "wav2vec2": Wav2Vec2ForGMPEmotion}


def encoder_family(model_type: str) -> str:
    """``hubert``, ``wavlm`` or ``wav2vec2`` for a plain encoder's or one of our checkpoints' model_type."""
    family = model_type.removesuffix("_gmp")
    if family not in GMP_MODELS:
        raise ValueError(
            f"a {model_type!r} checkpoint is not supported; the encoder families are {', '.join(GMP_MODELS)}"
        )
    return family


HubertGMPConfig.register_for_auto_class()
WavLMGMPConfig.register_for_auto_class()
Wav2Vec2GMPConfig.register_for_auto_class()
HubertForGMPEmotion.register_for_auto_class("AutoModelForAudioClassification")
WavLMForGMPEmotion.register_for_auto_class("AutoModelForAudioClassification")
Wav2Vec2ForGMPEmotion.register_for_auto_class("AutoModelForAudioClassification")


def default_feature_extractor(do_normalize: bool = True) -> Wav2Vec2FeatureExtractor:
    """The 16 kHz waveform feature extractor of this model family (per-clip normalisation, attention mask)."""
    return Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=do_normalize, return_attention_mask=True
    )


def _check_label_range(labels: torch.Tensor, num_classes: int, name: str) -> None:
    valid = labels[labels != IGNORE_INDEX]
    if valid.numel() and (valid.min() < 0 or valid.max() >= num_classes):
        raise ValueError(
            f"{name} must be in [0, {num_classes}) or -100, got values from {int(valid.min())} to {int(valid.max())}"
        )


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over non-ignored targets; zero (not NaN) when a batch has none."""
    valid = labels != IGNORE_INDEX
    if not valid.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[valid], labels[valid])


__all__ = [
    "GMP_MODELS",
    "GMPEmotionMixin",
    "GMPEmotionOutput",
    "HubertForGMPEmotion",
    "Wav2Vec2ForGMPEmotion",
    "WavLMForGMPEmotion",
    "default_feature_extractor",
    "encoder_family",
]
