"""``audio-classification`` pipeline for speech emotion models that needs neither FFmpeg nor torchaudio.

Files and bytes are decoded with soundfile and any sampling rate is resampled with soxr. On request it
also returns the speaker gender and an emotion timeline. Saved checkpoints carry this file and
register it under ``custom_pipelines`` so ``pipeline("audio-classification", model=...,
trust_remote_code=True)`` picks it; it imports only torch, transformers, numpy and its siblings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import AudioClassificationPipeline

from .audio_io import duration_hint, load_waveform


class SpeechEmotionPipeline(AudioClassificationPipeline):
    """Emotion classification of one clip or a list of clips.

    Inputs: a path, bytes, a 1-D/2-D numpy array or torch tensor (16 kHz unless ``sampling_rate=`` is
    given), or a dict ``{"array" or "raw": ..., "sampling_rate": ...}`` as made by ``datasets``.
    Multi-channel audio is averaged, or one ``channel=`` is kept.

    Output: the standard ``[{"label", "score"}, ...]``, unless ``return_gender=True`` or
    ``return_timeline=True`` is passed, in which case a dict with ``"emotion"`` (that list) plus
    ``"gender"`` (same format) and/or ``"timeline"`` (``[{"start", "end", "label", "score"}, ...]``,
    one entry per ``timeline_window`` seconds) is returned.
    """

    def __call__(self, inputs: Any, **kwargs):
        """Classify one clip, or a list; with ``batch_size > 1`` a list runs longest-first, so each batch
        holds clips of similar length (little padding), and the answers come back in input order."""
        batch_size = kwargs.get("batch_size") or self._batch_size or 1
        if not isinstance(inputs, list) or len(inputs) < 2 or batch_size < 2:
            return super().__call__(inputs, **kwargs)
        rate = kwargs.get("sampling_rate") or self.feature_extractor.sampling_rate
        order = sorted(range(len(inputs)), key=lambda i: -duration_hint(inputs[i], rate))
        results = super().__call__([inputs[i] for i in order], **kwargs)
        restored: list = [None] * len(inputs)
        for position, index in enumerate(order):
            restored[index] = results[position]
        return restored

    def check_model_type(self, supported_models):  # our model class is not in the static task mapping
        if not hasattr(self.model, "gender_classifier"):
            super().check_model_type(supported_models)

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        function_to_apply: str | None = None,
        sampling_rate: int | None = None,
        channel: int | None = None,
        return_gender: bool | None = None,
        return_timeline: bool | None = None,
        timeline_window: float | None = None,
        **kwargs,
    ):
        _, _, postprocess_params = super()._sanitize_parameters(top_k=top_k, function_to_apply=function_to_apply)
        preprocess_params = {}
        if sampling_rate is not None:
            preprocess_params["sampling_rate"] = sampling_rate
        if channel is not None:
            preprocess_params["channel"] = channel
        forward_params = {}
        if return_timeline is not None:
            forward_params["output_frame_logits"] = return_timeline
            postprocess_params["return_timeline"] = return_timeline
        if return_gender is not None:
            postprocess_params["return_gender"] = return_gender
        if timeline_window is not None:
            if timeline_window <= 0:
                raise ValueError(f"timeline_window must be > 0 seconds, got {timeline_window}")
            postprocess_params["timeline_window"] = timeline_window
        return preprocess_params, forward_params, postprocess_params

    def preprocess(self, inputs: Any, sampling_rate: int | None = None, channel: int | None = None):
        target_rate = self.feature_extractor.sampling_rate
        if isinstance(inputs, dict):
            if "sampling_rate" not in inputs or not ("array" in inputs or "raw" in inputs):
                raise ValueError('a dict input needs "sampling_rate" and an "array" (or "raw") entry')
            sampling_rate = inputs["sampling_rate"]
            inputs = inputs["array"] if "array" in inputs else inputs["raw"]
        if isinstance(inputs, torch.Tensor):
            inputs = inputs.detach().cpu().numpy()
        if isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], (int, float)):
            inputs = np.asarray(inputs, dtype=np.float32)
        if isinstance(inputs, np.ndarray) and sampling_rate is None:
            sampling_rate = target_rate
        min_samples = getattr(self.model.config, "min_input_samples", 400)
        waveform = load_waveform(inputs, sampling_rate, target_rate, channel=channel, min_samples=min_samples)
        return self.feature_extractor(
            waveform, sampling_rate=target_rate, return_attention_mask=True, return_tensors="pt"
        )

    def _forward(self, model_inputs, output_frame_logits: bool = False):
        outputs = self.model(**model_inputs, output_frame_logits=output_frame_logits)
        result = {"logits": outputs.logits, "gender_logits": outputs.gender_logits}
        if output_frame_logits:
            result["frame_logits"] = outputs.frame_logits
            result["frame_lengths"] = outputs.frame_mask.sum(dim=-1)
        return result

    def postprocess(
        self,
        model_outputs,
        top_k: int = 5,
        function_to_apply: str | None = None,
        return_gender: bool = False,
        return_timeline: bool = False,
        timeline_window: float = 0.5,
    ):
        emotion = self._ranked(model_outputs["logits"][0], self.model.config.id2label, top_k, function_to_apply)
        if not (return_gender or return_timeline):
            return emotion
        result: dict[str, Any] = {"emotion": emotion}
        if return_gender:
            labels = dict(enumerate(self.model.config.gender_labels))
            result["gender"] = self._ranked(model_outputs["gender_logits"][0], labels, len(labels), None)
        if return_timeline:
            result["timeline"] = self._timeline(model_outputs, timeline_window)
        return result

    @staticmethod
    def _ranked(logits: torch.Tensor, id2label: dict, top_k: int, function_to_apply: str | None) -> list[dict]:
        """The standard pipeline output: the ``top_k`` labels with their scores, best first."""
        logits = logits.float()
        if function_to_apply in (None, "softmax"):
            scores = logits.softmax(-1)
        elif function_to_apply == "sigmoid":
            scores = logits.sigmoid()
        else:
            scores = logits
        values, ids = scores.topk(min(top_k, scores.numel()))
        return [{"score": float(value), "label": id2label[int(i)]} for value, i in zip(values, ids)]

    def _timeline(self, model_outputs, window: float) -> list[dict[str, Any]]:
        """Average frame probabilities over windows of ``window`` seconds (frames are 20 ms apart)."""
        config = self.model.config
        frame_seconds = float(np.prod(config.conv_stride)) / self.feature_extractor.sampling_rate
        length = int(model_outputs["frame_lengths"][0])
        probs = model_outputs["frame_logits"][0, :length].float().softmax(-1)
        step = max(1, round(window / frame_seconds))
        timeline = []
        for start in range(0, length, step):
            mean = probs[start : start + step].mean(dim=0)
            best = int(mean.argmax())
            timeline.append(
                {
                    "start": round(start * frame_seconds, 3),
                    "end": round(min(start + step, length) * frame_seconds, 3),
                    "label": config.id2label[best],
                    "score": float(mean[best]),
                }
            )
        return timeline


__all__ = ["SpeechEmotionPipeline"]
