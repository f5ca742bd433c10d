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
from transformers.utils import logging

from .answers import ranked_labels, timeline_entries
from .audio_io import bad_inputs_error, decode_inputs, longest_first

# Recordings longer than one chunk are encoded chunk by chunk (bounded memory); each chunk sees this
# much extra audio on either side, which is encoded and then dropped (ours; HuBERT was pre-trained on
# crops of a few seconds, so 30 s chunks with 5 s of context lose little).
DEFAULT_CHUNK_LENGTH_S = 30.0
DEFAULT_STRIDE_LENGTH_S = 5.0
# The chunked path keeps each frame's emotion features until the whole recording is pooled; past this much
# it says so (ours: an hour of HuBERT-large frames reading every layer is ~18 GB, projected ones ~0.2 GB).
FRAME_FEATURES_WARNING_BYTES = 4 * 2**30

logger = logging.get_logger(__name__)


class SpeechEmotionPipeline(AudioClassificationPipeline):
    """Emotion classification of one clip or a list of clips.

    Inputs: a path, bytes, a 1-D/2-D numpy array or torch tensor (16 kHz unless ``sampling_rate=`` is
    given), or a dict ``{"array" or "raw": ..., "sampling_rate": ...}`` as made by ``datasets``.
    Multi-channel audio is averaged, or one ``channel=`` is kept.

    Output: the standard ``[{"label", "score"}, ...]``, unless ``return_gender=True`` or
    ``return_timeline=True`` is passed, in which case a dict with ``"emotion"`` (that list) plus
    ``"gender"`` (same format) and/or ``"timeline"`` (``[{"start", "end", "label", "score", "scores"},
    ...]``, one entry per ``timeline_window`` seconds) is returned.

    Recordings longer than ``chunk_length_s`` (default 30 s) are encoded in chunks of that length, each
    with ``stride_length_s`` (default 5 s) of extra audio on either side that is encoded and dropped; the
    kept frames are stitched and classified as one clip (utterance answer, gender, timeline), so memory
    grows with the recording only through its frame features. ``chunk_length_s=0`` turns chunking off.

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
        min_samples = getattr(self.model.config, "min_input_samples", 400)
        waves, errors = decode_inputs(items, rate, target, channel, min_samples)
        if errors and on_error == "raise":
            raise errors[0] if single else bad_inputs_error(errors, len(items))
        indices = list(waves)
        order = [indices[i] for i in longest_first([len(waves[index]) for index in indices])]
        answers: list = [None] * len(items)
        for index, error in errors.items():
            answers[index] = {"error": str(error)}
        chunk_samples, _ = self._chunking(kwargs)
        long = {index for index in order if chunk_samples and len(waves[index]) > chunk_samples}
        short_first = [index for index in order if index not in long], [index for index in order if index in long]
        for group, group_kwargs in zip(short_first, (kwargs, {**kwargs, "batch_size": 1})):  # chunks: one by one
            if group:
                batch = [{"array": waves[index], "sampling_rate": target} for index in group]
                for index, result in zip(group, super().__call__(batch, **group_kwargs)):
                    answers[index] = result
        return answers[0] if single else answers

    def _chunking(self, kwargs: dict) -> tuple[int, int]:
        """This call's chunk and context lengths in samples, whole encoder frames (0: no chunking)."""
        length_s = kwargs.get("chunk_length_s", self._forward_params.get("chunk_length_s", DEFAULT_CHUNK_LENGTH_S))
        stride_s = kwargs.get("stride_length_s", self._forward_params.get("stride_length_s", DEFAULT_STRIDE_LENGTH_S))
        return self._frames_to_samples(length_s), self._frames_to_samples(stride_s)

    def _frames_to_samples(self, seconds: float) -> int:
        hop = int(np.prod(self.model.config.conv_stride))
        return hop * round(seconds * self.feature_extractor.sampling_rate / hop)

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
        chunk_length_s: float | None = None,
        stride_length_s: float | None = None,
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
        for name, value in (("chunk_length_s", chunk_length_s), ("stride_length_s", stride_length_s)):
            if value is not None:
                if value < 0:
                    raise ValueError(f"{name} must be >= 0 seconds, got {value}")
                forward_params[name] = value
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

    def _forward(
        self,
        model_inputs,
        window_frames: int | None = None,
        chunk_length_s: float = DEFAULT_CHUNK_LENGTH_S,
        stride_length_s: float = DEFAULT_STRIDE_LENGTH_S,
    ):
        input_values = model_inputs["input_values"]
        chunk_samples = self._frames_to_samples(chunk_length_s)
        if chunk_samples and input_values.shape[0] == 1 and input_values.shape[1] > chunk_samples:
            context_samples = self._frames_to_samples(stride_length_s)
            outputs = self._chunked(input_values, chunk_samples, context_samples, window_frames)
        else:
            outputs = self.model(**model_inputs, window_frames=window_frames)
        result = {"logits": outputs.logits, "gender_logits": outputs.gender_logits}
        if window_frames is not None:
            result["window_logits"] = outputs.window_logits
            result["window_mask"] = outputs.window_mask
            result["frame_lengths"] = outputs.frame_mask.sum(dim=-1)
            result["window_frames"] = torch.full_like(result["frame_lengths"], window_frames)
        return result

    def _chunked(self, input_values: torch.Tensor, chunk_samples: int, context_samples: int, window_frames):
        """One long recording: encode chunks (with context on either side), keep each chunk's own frames,
        stitch them, and classify the whole as one clip. Chunks start on frame boundaries, so the kept
        frames are the recording's frames, in order, once each."""
        model, config = self.model, self.model.config
        hop = int(np.prod(config.conv_stride))
        receptive_field = config.min_input_samples  # samples one encoder frame reads
        total_samples = input_values.shape[1]
        total_frames = int(model.num_frames(total_samples))
        chunk_frames = chunk_samples // hop
        feature_bytes = total_frames * model.emotion_frame_size * model.dtype.itemsize
        if feature_bytes > FRAME_FEATURES_WARNING_BYTES:
            logger.warning(
                "this %.0f-minute recording keeps %.1f GB of frame features until it is pooled (%d values per "
                "frame, config.emotion_input=%r); if memory runs short, split it into shorter files",
                total_samples / self.feature_extractor.sampling_rate / 60, feature_bytes / 1e9,
                model.emotion_frame_size, config.emotion_input,
            )  # fmt: skip
        emotion_frames, gender_frames = [], []
        starts = range(0, total_frames, chunk_frames)
        for first in logging.tqdm(starts, desc="chunks", unit="chunk", leave=False, disable=len(starts) < 4):
            last = min(first + chunk_frames, total_frames)  # frames [first, last) are this chunk's own
            begin = max(0, first * hop - context_samples)
            end = min(total_samples, (last - 1) * hop + receptive_field + context_samples)
            frames = model.encode_frames(input_values[:, begin:end])
            keep = slice(first - begin // hop, last - begin // hop)
            emotion_frames.append(frames.emotion_frames[:, keep])
            if frames.gender_frames is not None:
                gender_frames.append(frames.gender_frames[:, keep])
        frame_mask = torch.ones(1, total_frames, dtype=torch.bool, device=input_values.device)
        gender = torch.cat(gender_frames, dim=1) if gender_frames else None
        return model.classify_frames(torch.cat(emotion_frames, dim=1), frame_mask, gender, window_frames)

    def postprocess(
        self,
        model_outputs,
        top_k: int = 5,
        function_to_apply: str | None = None,
        return_gender: bool = False,
        return_timeline: bool = False,
    ):
        logits = model_outputs["logits"][0].float()
        emotion = ranked_labels(logits, self.model.config.id2label, top_k, function_to_apply)
        if not (return_gender or return_timeline):
            return emotion
        result: dict[str, Any] = {"emotion": emotion}
        if return_gender:
            labels = dict(enumerate(self.model.config.gender_labels))
            result["gender"] = ranked_labels(model_outputs["gender_logits"][0].float(), labels, len(labels))
        if return_timeline:
            result["timeline"] = timeline_entries(
                model_outputs["window_logits"][0][model_outputs["window_mask"][0]].float(),
                int(model_outputs["window_frames"][0]),
                int(model_outputs["frame_lengths"][0]),
                self._frame_seconds(),
                self.model.config.id2label,
                function_to_apply,
            )
        return result


__all__ = ["SpeechEmotionPipeline"]
