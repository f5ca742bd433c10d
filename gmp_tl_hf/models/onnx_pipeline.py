"""Run a model exported by ``gmp-tl export-onnx`` with onnxruntime: the pipeline's answers without torch.

The export folder carries this file with ``answers.py`` and ``audio_io.py``; with numpy, onnxruntime,
soundfile (files) and soxr (resampling) installed, ``from onnx_pipeline import OnnxSpeechEmotionPipeline``
works there without this package, transformers or torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .answers import ranked_labels, timeline_entries
from .audio_io import bad_inputs_error, decode_inputs

try:
    import onnxruntime
except ImportError:  # reported when a pipeline is made
    onnxruntime = None

ONNX_FILE = "model.onnx"
EXPORT_FILE = "onnx_export.json"
OUTPUTS = ("logits", "gender_logits", "window_logits", "frame_logits")


class OnnxSpeechEmotionPipeline:
    """Emotion (and gender, timeline) of clips with an exported model, in the output format of the torch
    ``SpeechEmotionPipeline``: ``[{"label", "score"}, ...]``, or a dict with ``"emotion"``, ``"gender"``
    and ``"timeline"`` when asked. Every clip is decoded and checked first; clips then run one at a time
    (the export takes unpadded input). The timeline's window is the one chosen at export.
    """

    def __init__(self, model_dir: str | os.PathLike, threads: int | None = None, providers: list | None = None):
        if onnxruntime is None:
            raise ImportError("onnxruntime is needed to run an exported model: pip install onnxruntime")
        directory = Path(model_dir)
        config = json.loads((directory / "config.json").read_text())
        preprocessor = json.loads((directory / "preprocessor_config.json").read_text())
        self.export = json.loads((directory / EXPORT_FILE).read_text())
        self.id2label = {int(key): label for key, label in config["id2label"].items()}
        self.gender_labels = dict(enumerate(config.get("gender_labels", [])))
        self.gender_head_trained = bool(config.get("gender_head_trained", False))
        self.sampling_rate = int(preprocessor.get("sampling_rate", 16000))
        self.do_normalize = bool(preprocessor.get("do_normalize", True))
        self.min_samples = int(config.get("min_input_samples", 400))
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(
            str(directory / ONNX_FILE), options, providers=providers or ["CPUExecutionProvider"]
        )

    def run(self, waveform: np.ndarray) -> dict[str, np.ndarray]:
        """The exported model's outputs for one mono waveform at the model's rate (batch of one)."""
        values = np.asarray(waveform, dtype=np.float32)
        if self.do_normalize:  # as Wav2Vec2FeatureExtractor: zero mean, unit variance per clip
            values = (values - values.mean()) / np.sqrt(values.var() + 1e-7)
        outputs = self.session.run(list(OUTPUTS), {"input_values": values[None, :].astype(np.float32)})
        return dict(zip(OUTPUTS, outputs))

    def __call__(
        self,
        inputs: Any,
        top_k: int = 5,
        return_gender: bool = False,
        return_timeline: bool = False,
        timeline_window: float | None = None,
        sampling_rate: int | None = None,
        channel: int | None = None,
        on_error: str = "raise",
        function_to_apply: str | None = None,
    ):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if return_gender and not self.gender_head_trained:
            raise ValueError(
                "this model's gender head was not trained for its encoder (config.gender_head_trained is false), "
                "so it has no gender answer to give; call without return_gender=True"
            )
        window = self.export["timeline_window_s"]
        if return_timeline and timeline_window is not None and abs(timeline_window - window) > 1e-9:
            raise ValueError(f"this export's timeline has {window} s windows (set at export), not {timeline_window} s")
        single = not isinstance(inputs, list)
        items = [inputs] if single else inputs
        waves, errors = decode_inputs(items, sampling_rate, self.sampling_rate, channel, self.min_samples)
        if errors and on_error == "raise":
            raise errors[0] if single else bad_inputs_error(errors, len(items))
        answers: list = [{"error": str(errors[index])} if index in errors else None for index in range(len(items))]
        for index, wave in waves.items():
            outputs = self.run(wave)
            emotion = ranked_labels(outputs["logits"][0], self.id2label, top_k, function_to_apply)
            if not (return_gender or return_timeline):
                answers[index] = emotion
                continue
            answer: dict[str, Any] = {"emotion": emotion}
            if return_gender:
                labels = self.gender_labels
                answer["gender"] = ranked_labels(outputs["gender_logits"][0], labels, len(labels))
            if return_timeline:
                answer["timeline"] = timeline_entries(
                    outputs["window_logits"][0],
                    self.export["timeline_window_frames"],
                    outputs["frame_logits"].shape[1],
                    self.export["frame_seconds"],
                    self.id2label,
                    function_to_apply,
                )
            answers[index] = answer
        return answers[0] if single else answers


__all__ = ["EXPORT_FILE", "ONNX_FILE", "OUTPUTS", "OnnxSpeechEmotionPipeline"]
