"""HuBERT's masked prediction (Hsu et al., 2021) around any of our length-aware encoders.

The CNN features of random spans are replaced by the encoder's mask embedding; the transformer's output
at each frame is projected (``final_proj``) and scored against one embedding per codeword of each
target set by cosine similarity over a temperature; the loss is the cross-entropy on masked frames
(and, with a weight, on unmasked ones), averaged over target sets. Values follow fairseq's HuBERT
base recipe where named so in :class:`MaskedPredictionSettings`; everything else is ours.

Only the encoder outlives pre-training: :meth:`MaskedPredictionModel.save_encoder` writes it as the stock
model of its family (``HubertModel``, ...), the same kind of checkpoint as ``facebook/hubert-base-ls960``,
so every fine-tuning recipe takes it as ``model_name_or_path`` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import ModelOutput
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices

from .models.modeling_hubert_gmp import IGNORE_INDEX


@dataclass
class MaskedPredictionSettings:
    """The head and masking of pre-training (defaults: fairseq's HuBERT base recipe unless marked ours)."""

    target_sizes: tuple[int, ...]
    final_dim: int = 256  # fairseq
    logit_temp: float = 0.1  # fairseq
    mask_prob: float = 0.8  # fairseq (span starts per frame x span length, spans may overlap)
    mask_length: int = 10  # fairseq
    min_masks: int = 2  # fairseq's min_masks=2 in compute_mask_indices
    masked_weight: float = 1.0  # fairseq pred_masked_weight
    unmasked_weight: float = 0.0  # fairseq pred_nomask_weight


@dataclass
class MaskedPredictionOutput(ModelOutput):
    """loss; per target set: the masked-prediction accuracy and the number of masked frames scored."""

    loss: torch.FloatTensor | None = None
    masked_accuracy: torch.FloatTensor | None = None
    masked_frames: torch.LongTensor | None = None


class MaskedPredictionModel(nn.Module):
    """An encoder (``LengthAwareHubertModel`` and kin) + HuBERT's prediction head over ``target_sizes``."""

    def __init__(self, encoder: nn.Module, settings: MaskedPredictionSettings):
        super().__init__()
        self.encoder = encoder
        self.settings = settings
        hidden = encoder.config.hidden_size
        if getattr(encoder, "masked_spec_embed", None) is None:  # configs with mask_time_prob=0 have none
            encoder.masked_spec_embed = nn.Parameter(torch.empty(hidden).uniform_())
        sets = len(settings.target_sizes)
        self.final_proj = nn.Linear(hidden, settings.final_dim * sets)  # one projection per target set
        self.label_embeddings = nn.Parameter(torch.empty(sum(settings.target_sizes), settings.final_dim))
        nn.init.uniform_(self.label_embeddings)  # fairseq: label_embs_concat, uniform

    def draw_masks(self, frame_mask: torch.Tensor) -> torch.Tensor:
        """Span masks over each clip's valid frames (numpy's RNG, which the Trainer seeds)."""
        masks = _compute_mask_indices(
            tuple(frame_mask.shape),
            mask_prob=self.settings.mask_prob,
            mask_length=self.settings.mask_length,
            attention_mask=frame_mask.long().cpu(),
            min_masks=self.settings.min_masks,
        )
        return torch.from_numpy(masks).to(frame_mask.device) & frame_mask

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        gmp_labels: torch.Tensor | None = None,
        mask_time_indices: torch.Tensor | None = None,
    ) -> MaskedPredictionOutput:
        r"""
        gmp_labels (`torch.LongTensor` of shape `(batch, frames, target_sets)`):
            Target codeword per encoder frame and set, -100 for padding (the collator's ``gmp_labels``).
        mask_time_indices (`torch.BoolTensor` of shape `(batch, frames)`, *optional*):
            Frames to mask; drawn with :meth:`draw_masks` when not given.
        """
        if attention_mask is None:
            lengths = torch.full((len(input_values),), input_values.shape[1], device=input_values.device)
        else:
            lengths = attention_mask.sum(dim=-1).long()
        frame_mask = self.encoder.frame_mask(input_values, lengths)
        if gmp_labels is None or gmp_labels.shape[:2] != frame_mask.shape:
            shape = None if gmp_labels is None else tuple(gmp_labels.shape)
            raise ValueError(f"gmp_labels must be (batch, {frame_mask.shape[1]}, sets), got {shape}")
        if gmp_labels.shape[-1] != len(self.settings.target_sizes):
            raise ValueError(f"{gmp_labels.shape[-1]} target sets for a head of {len(self.settings.target_sizes)}")
        masked = self.draw_masks(frame_mask) if mask_time_indices is None else mask_time_indices & frame_mask
        hidden = self.encoder.encode(input_values, attention_mask, lengths, mask_time_indices=masked).last_hidden_state
        projected = self.final_proj(hidden).chunk(len(self.settings.target_sizes), dim=-1)
        codewords = F.normalize(self.label_embeddings, dim=-1).split(list(self.settings.target_sizes))
        losses, accuracies, counts = [], [], []
        for index, (projection, embeddings) in enumerate(zip(projected, codewords)):
            targets = gmp_labels[..., index].long()
            scored = frame_mask & (targets != IGNORE_INDEX)
            logits = F.normalize(projection.float(), dim=-1) @ embeddings.float().T / self.settings.logit_temp
            loss = 0.0
            for frames, weight in ((scored & masked, self.settings.masked_weight),
                                   (scored & ~masked, self.settings.unmasked_weight)):  # fmt: skip
                if weight > 0 and bool(frames.any()):
                    loss = loss + weight * F.cross_entropy(logits[frames], targets[frames])
            losses.append(loss)
            hits = (logits.argmax(dim=-1) == targets) & scored & masked
            counts.append((scored & masked).sum())
            accuracies.append(hits.sum() / counts[-1].clamp(min=1))
        return MaskedPredictionOutput(
            loss=torch.stack([torch.as_tensor(loss, device=hidden.device) for loss in losses]).mean(),
            masked_accuracy=torch.stack(accuracies).detach(),
            masked_frames=torch.stack(counts),
        )

    def save_encoder(self, directory: str | Path, stock_class: type) -> None:
        """The encoder alone, as ``stock_class`` (e.g. ``HubertModel``): same parameter names, a stock
        config, loadable by every recipe and by ``from_pretrained`` of any of our model classes."""
        stock = stock_class(self.encoder.config)
        stock.load_state_dict(self.encoder.state_dict())
        stock.config.architectures = [stock_class.__name__]
        stock.save_pretrained(directory)
