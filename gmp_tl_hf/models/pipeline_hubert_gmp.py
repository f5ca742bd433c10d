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

from .audio_io import AudioError, load_waveform, longest_first


class SpeechEmotionPipeline(AudioClassificationPipeline):
    """Emotion classification of one clip or a list of clips.

    Inputs: a path, bytes, a 1-D/2-D numpy array or torch tensor (16 kHz unless ``sampling_rate=`` is
    given), or a dict ``{"array" or "raw": ..., "sampling_rate": ...}`` as made by ``datasets``.
    Multi-channel audio is averaged, or one ``channel=`` is kept.

    Output: the standard ``[{"label", "score"}, ...]``, unless ``return_gender=True`` or
    ``return_timeline=True`` is passed, in which case a dict with ``"emotion"`` (that list) plus
    ``"gender"`` (same format) and/or ``"timeline"`` (``[{"start", "end", "label", "score", "scores"},
    ...]``, one entry per ``timeline_window`` seconds) is returned.

    Each timeline window is answered exactly as a whole clip is (the model's pooling and emotion head
    on that window's frames), so a window spanning the clip repeats the clip's answer. The gender is
    given only by models whose gender head was trained for their encoder (``config.gender_head_trained``).
    """

    def __call__(self, inputs: Any, **kwargs):
        """Classify one clip, or a list of clips.

        Every clip is decoded and checked before any compute, so a bad one never costs the others'
        work. ``on_error="raise"`` (default) raises one error naming each bad item (index and source);
        ``on_error="skip"`` answers the good ones and gives each bad item ``{"error": reason}`` in its
        place. With ``batch_size > 1`` a list runs longest-first, so each batch holds clips of similar
        length (little padding); the answers come back in input order.
        """
        on_error = kwargs.pop("on_error", "raise")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        single = not isinstance(inputs, list)
        items = [inputs] if single else inputs
        # given with the call, else when the pipeline was made (Pipeline keeps those in _preprocess_params)
        rate = kwargs.pop("sampling_rate", self._preprocess_params.get("sampling_rate"))
        channel = kwargs.pop("channel", self._preprocess_params.get("channel"))
        target = self.feature_extractor.sampling_rate
        waves: dict[int, np.ndarray] = {}
        errors: dict[int, Exception] = {}
        for index, item in enumerate(items):
            try:
                waves[index] = self._decode(item, rate, channel)
            except ValueError as error:  # AudioError included: bad file, bad array, bad dict
                errors[index] = error
        if errors and on_error == "raise":
            if single:
                raise errors[0]
            listed = "; ".join(f"item {index}: {error}" for index, error in errors.items())
            raise AudioError(f"{len(errors)} of {len(items)} inputs", f"{listed} (on_error='skip' answers the rest)")
        indices = list(waves)
        order = [indices[i] for i in longest_first([len(waves[index]) for index in indices])]
        answers: list = [None] * len(items)
        for index, error in errors.items():
            answers[index] = {"error": str(error)}
        if order:
            batch = [{"array": waves[index], "sampling_rate": target} for index in order]
            for index, result in zip(order, super().__call__(batch, **kwargs)):
                answers[index] = result
        return answers[0] if single else answers

    def _decode(self, inputs: Any, sampling_rate: int | None, channel: int | None) -> np.ndarray:
        """Any accepted input to a checked mono waveform at the feature extractor's rate."""
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
        return load_waveform(inputs, sampling_rate, target_rate, channel=channel, min_samples=min_samples)

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
        if timeline_window is not None and timeline_window <= 0:
            raise ValueError(f"timeline_window must be > 0 seconds, got {timeline_window}")
        if return_timeline:
            forward_params["window_frames"] = self._window_frames(timeline_window or 0.5)
        if return_timeline is not None:
            postprocess_params["return_timeline"] = return_timeline
        if return_gender:
            self._check_gender_head()
        if return_gender is not None:
            postprocess_params["return_gender"] = return_gender
        return preprocess_params, forward_params, postprocess_params

    def _window_frames(self, seconds: float) -> int:
        """Encoder frames per timeline window of ``seconds`` (frames are 20 ms apart)."""
        return max(1, round(seconds / self._frame_seconds()))

    def _frame_seconds(self) -> float:
        return float(np.prod(self.model.config.conv_stride)) / self.feature_extractor.sampling_rate

    def _check_gender_head(self) -> None:
        if not getattr(self.model.config, "gender_head_trained", False):
            raise ValueError(
                "this model's gender head was not trained for its encoder (config.gender_head_trained is false), "
                "so it has no gender answer to give; call without return_gender=True"
            )

    def preprocess(self, inputs: dict, sampling_rate: int | None = None, channel: int | None = None):
        """Features of a clip that ``__call__`` has decoded, resampled and checked (``sampling_rate`` and
        ``channel`` were applied there; they arrive here only because the Pipeline routes them so)."""
        target_rate = self.feature_extractor.sampling_rate
        return self.feature_extractor(
            inputs["array"], sampling_rate=target_rate, return_attention_mask=True, return_tensors="pt"
        )

    def _forward(self, model_inputs, window_frames: int | None = None):
        outputs = self.model(**model_inputs, window_frames=window_frames)
        result = {"logits": outputs.logits, "gender_logits": outputs.gender_logits}
        if window_frames is not None:
            result["window_logits"] = outputs.window_logits
            result["window_mask"] = outputs.window_mask
            result["frame_lengths"] = outputs.frame_mask.sum(dim=-1)
            result["window_frames"] = torch.full_like(result["frame_lengths"], window_frames)
        return result

    def postprocess(
        self,
        model_outputs,
        top_k: int = 5,
        function_to_apply: str | None = None,
        return_gender: bool = False,
        return_timeline: bool = False,
    ):
        emotion = self._ranked(model_outputs["logits"][0], self.model.config.id2label, top_k, function_to_apply)
        if not (return_gender or return_timeline):
            return emotion
        result: dict[str, Any] = {"emotion": emotion}
        if return_gender:
            labels = dict(enumerate(self.model.config.gender_labels))
            result["gender"] = self._ranked(model_outputs["gender_logits"][0], labels, len(labels), None)
        if return_timeline:
            result["timeline"] = self._timeline(model_outputs, function_to_apply)
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

    def _timeline(self, model_outputs, function_to_apply: str | None) -> list[dict[str, Any]]:
        """One entry per window: its span in seconds, best label and score, and every label's score."""
        id2label = self.model.config.id2label
        frame_seconds = self._frame_seconds()
        step = int(model_outputs["window_frames"][0])
        length = int(model_outputs["frame_lengths"][0])
        windows = model_outputs["window_logits"][0][model_outputs["window_mask"][0]]
        timeline = []
        for index, logits in enumerate(windows):
            ranked = self._ranked(logits, id2label, len(id2label), function_to_apply)
            timeline.append(
                {
                    "start": round(index * step * frame_seconds, 3),
                    "end": round(min((index + 1) * step, length) * frame_seconds, 3),
                    "label": ranked[0]["label"],
                    "score": ranked[0]["score"],
                    "scores": {entry["label"]: entry["score"] for entry in ranked},
                }
            )
        return timeline


__all__ = ["SpeechEmotionPipeline"]
