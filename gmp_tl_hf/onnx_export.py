"""``gmp-tl export-onnx``: a checkpoint to an ONNX model that onnxruntime runs without torch.

The graph takes ``input_values`` `(batch, samples)`, both dynamic, of equal-length unpadded clips
(normalised as the feature extractor does) and returns emotion logits, gender logits, the timeline's
window logits (window length fixed at export) and per-frame emotion logits, computed by the model's own
pooling and heads (:meth:`GMPEmotionMixin.unpadded_outputs`; any encoder family). The output folder is a
small Python package: the ``.onnx``, ``config.json``, ``preprocessor_config.json``, ``onnx_export.json`` (what was
exported, with the largest torch-vs-onnxruntime difference measured at export) and the torch-free
``OnnxSpeechEmotionPipeline`` with its two helper files.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
import transformers
from torch import nn

from .arguments import ConfigError
from .model_setup import load_gmp_model
from .models import onnx_pipeline
from .models.answers import scores_of
from .models.modeling_hubert_gmp import GMPEmotionMixin, default_feature_extractor
from .models.onnx_pipeline import EXPORT_FILE, ONNX_FILE, OUTPUTS, OnnxSpeechEmotionPipeline

try:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model
except ImportError:  # without the onnx extra; main() names what to install
    QuantType = quantize_dynamic = optimize_model = None

logger = logging.getLogger(__name__)

MAX_DIFFERENCE = 1e-3  # refuse an export whose logits differ from torch's by more
MAX_SCORE_DIFFERENCE_INT8 = 0.05  # refuse an int8 export whose emotion/gender scores (softmax) differ by more
QUANTIZATIONS = (None, "int8")


class UnpaddedEmotionModel(nn.Module):
    """What is exported: the model's unpadded forward with the timeline window fixed."""

    def __init__(self, model: GMPEmotionMixin, window_frames: int):
        super().__init__()
        self.model = model
        self.window_frames = window_frames

    def forward(self, input_values: torch.Tensor):
        return self.model.unpadded_outputs(input_values, self.window_frames)


def test_waveforms(sampling_rate: int) -> list[np.ndarray]:
    """Two clips of different lengths (speech-like harmonics and noise) for the export check."""
    rng = np.random.default_rng(0)
    clips = []
    for seconds, f0 in ((1.3, 120.0), (4.7, 210.0)):
        t = np.arange(int(seconds * sampling_rate)) / sampling_rate
        wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * (1 + np.sin(2 * np.pi * 3 * t))
        clips.append((0.1 * wave + 0.01 * rng.standard_normal(t.size)).astype(np.float32))
    return clips


def export_onnx(
    model_dir: str | Path,
    output_dir: str | Path,
    timeline_window: float = 0.5,
    opset: int = 18,
    quantize: str | None = None,
) -> dict:
    """Export ``model_dir`` to ``output_dir`` and check onnxruntime against torch; returns the record.

    ``quantize="int8"``: attention fused and the weights in int8 (:func:`quantize_int8`), faster on CPU; the
    outputs then differ from torch's (checked on the emotion and gender scores)."""
    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    output_dir = Path(output_dir)
    model = load_gmp_model(model_dir).eval()
    frame_seconds = float(np.prod(model.config.conv_stride)) / 16000
    window_frames = max(1, round(timeline_window / frame_seconds))
    exported = UnpaddedEmotionModel(model, window_frames).eval()
    output_dir.mkdir(parents=True, exist_ok=True)
    samples = torch.export.Dim("samples", min=model.config.min_input_samples, max=16000 * 3600)
    # the exporter's notes (torchvision ops absent, constant folding skipped) need no action from the user
    exporter_logs = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript")]
    levels = [log.level for log in exporter_logs]
    for log in exporter_logs:
        log.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch-internal deprecations inside the exporter
            program = torch.onnx.export(
                exported,
                (torch.zeros(2, 16000),),
                input_names=["input_values"],
                output_names=list(OUTPUTS),
                dynamic_shapes=({0: torch.export.Dim("batch"), 1: samples},),
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
    finally:
        for log, level in zip(exporter_logs, levels):
            log.setLevel(level)
    program.save(str(output_dir / ONNX_FILE))
    model.config.to_json_file(output_dir / "config.json")
    source_extractor = Path(model_dir) / "preprocessor_config.json"
    if source_extractor.is_file():
        shutil.copyfile(source_extractor, output_dir / "preprocessor_config.json")
    else:
        default_feature_extractor().save_pretrained(output_dir)
    bundle = Path(onnx_pipeline.__file__).parent
    for name in ("onnx_pipeline.py", "answers.py", "audio_io.py"):
        shutil.copyfile(bundle / name, output_dir / name)
    (output_dir / "__init__.py").write_text(
        '"""An exported GMP-TL emotion model; see onnx_pipeline.py."""\n\n'
        "from .onnx_pipeline import OnnxSpeechEmotionPipeline\n\n"
        '__all__ = ["OnnxSpeechEmotionPipeline"]\n'
    )
    record = {
        "source": str(model_dir),
        "inputs": {"input_values": "(batch, samples) float32, equal-length unpadded clips, normalised per clip"},
        "outputs": {
            "logits": "(batch, labels)",
            "gender_logits": "(batch, genders)",
            "window_logits": "(batch, windows, labels)",
            "frame_logits": "(batch, frames, labels)",
        },
        "timeline_window_s": round(window_frames * frame_seconds, 6),
        "timeline_window_frames": window_frames,
        "frame_seconds": frame_seconds,
        "opset": opset,
        "quantization": quantize or "none (float32)",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    if quantize == "int8":
        quantize_int8(output_dir / ONNX_FILE, model.config)
    (output_dir / EXPORT_FILE).write_text(json.dumps(record, indent=2))
    record.update(check_export(exported, output_dir, quantized=quantize is not None))
    (output_dir / EXPORT_FILE).write_text(json.dumps(record, indent=2))
    return record


def quantize_int8(path: Path, config) -> None:
    """Replace the float32 graph at ``path`` by an int8 one: onnxruntime's transformer optimizer first fuses
    attention and layer norms (bert-style graph), then the matrix multiplications' and attention's weights
    are quantised dynamically (int8 weights, activations quantised per call)."""
    fused = path.with_name("model.fused.onnx")
    logging.disable(logging.WARNING)  # their generic advice (e.g. "consider pre-processing") needs no action here
    try:
        optimize_model(
            str(path), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size
        ).save_model_to_file(str(fused))
        quantize_dynamic(fused, path, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Attention"])
    finally:
        logging.disable(logging.NOTSET)
        fused.unlink(missing_ok=True)


def check_export(exported: UnpaddedEmotionModel, output_dir: Path, quantized: bool = False) -> dict[str, dict]:
    """Largest absolute difference between torch and onnxruntime on two test clips, per output's logits and
    for the emotion and gender scores (softmax). A float32 export whose logits differ by more than
    ``MAX_DIFFERENCE``, or an int8 one whose scores differ by more than ``MAX_SCORE_DIFFERENCE_INT8``, is
    removed and refused."""
    runner = OnnxSpeechEmotionPipeline(output_dir)
    extractor = default_feature_extractor()
    logits = dict.fromkeys(OUTPUTS, 0.0)
    scores = dict.fromkeys(("emotion", "gender"), 0.0)
    for wave in test_waveforms(runner.sampling_rate):
        with torch.no_grad():
            values = extractor(wave, sampling_rate=runner.sampling_rate, return_tensors="pt").input_values
            expected = [output.numpy() for output in exported(values)]
        ours = runner.run(wave)
        for name, reference in zip(OUTPUTS, expected):
            logits[name] = max(logits[name], float(np.abs(ours[name] - reference).max()))
        for name, output in (("emotion", "logits"), ("gender", "gender_logits")):
            reference = expected[OUTPUTS.index(output)][0]
            difference = np.abs(scores_of(ours[output][0]) - scores_of(reference)).max()
            scores[name] = max(scores[name], float(difference))
    too_far = max(scores.values()) > MAX_SCORE_DIFFERENCE_INT8 if quantized else max(logits.values()) > MAX_DIFFERENCE
    if too_far:
        (output_dir / ONNX_FILE).unlink()
        raise RuntimeError(f"onnxruntime and torch disagree (logits {logits}, scores {scores}); the export was removed")
    return {"max_abs_difference": logits, "max_score_difference": scores}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="gmp-tl export-onnx", description=__doc__)
    parser.add_argument("model_dir", help="a saved checkpoint folder (a run's stage2/, or any of ours)")
    parser.add_argument("--output", required=True, help="the folder to write")
    parser.add_argument("--timeline_window", type=float, default=0.5, help="seconds per timeline window")
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--quantize", choices=["int8"], default=None, help="int8 weights: faster, not exact")
    args = parser.parse_args(argv)
    missing = [name for name in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"export-onnx needs {', '.join(missing)}: pip install 'gmp-tl-hf[onnx]'")
    if not (Path(args.model_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{args.model_dir}: no config.json (give a saved checkpoint folder)")
    record = export_onnx(args.model_dir, args.output, args.timeline_window, args.opset, args.quantize)
    logits, scores = max(record["max_abs_difference"].values()), max(record["max_score_difference"].values())
    logger.info(
        "wrote %s (onnxruntime vs torch: logits within %.1e, scores within %.1e)", Path(args.output) / ONNX_FILE,
        logits, scores,
    )  # fmt: skip
    return record
