"""`gmp-tl export-onnx`: onnxruntime gives the torch model's answers, and runs without torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile
import torch
from conftest import EMODB_DIR, speechlike, tiny_model
from transformers import pipeline

from gmp_tl_hf import default_feature_extractor
from gmp_tl_hf.cli import main as cli
from gmp_tl_hf.models.onnx_pipeline import OnnxSpeechEmotionPipeline

for module in ("onnx", "onnxscript", "onnxruntime"):
    pytest.importorskip(module, reason=f"{module} is not installed (pip install 'gmp-tl-hf[onnx]')")


@pytest.fixture(
    scope="module",
    params=[
        {"pooling": "mean"},
        {"pooling": "attentive", "emotion_head": "am_softmax"},
        {"pooling": "statistics", "emotion_input": "all_layers"},
        {"family": "wavlm"},
        {"gender_input": "statistics", "gender_spectral_features": True},
    ],
)
def exported(request, tmp_path_factory):
    """A tiny checkpoint with confident heads, and its export."""
    root = tmp_path_factory.mktemp("onnx")
    model = tiny_model(seed=4, gender_head_trained=True, **request.param)
    with torch.no_grad():
        model.classifier.weight.mul_(10)
        if model.config.gender_spectral_features:  # as a refit would leave them
            model.spectral_gender_weight.normal_(std=0.02)
    model.save_pretrained(root / "checkpoint")
    default_feature_extractor().save_pretrained(root / "checkpoint")
    cli(["export-onnx", str(root / "checkpoint"), "--output", str(root / "exported"), "--timeline_window", "0.4"])
    return root / "checkpoint", root / "exported"


def clips() -> list[np.ndarray]:
    """Two synthetic clips, and four real EmoDB clips where ../shared is present."""
    waves = [speechlike(1.3, f0=120, seed=1), speechlike(3.7, f0=230, seed=2)]
    for path in sorted(EMODB_DIR.glob("*.wav"))[:4]:
        waves.append(soundfile.read(path, dtype="float32")[0])
    return waves


def test_export_writes_a_checked_self_contained_folder(exported):
    _, folder = exported
    names = {path.name for path in folder.iterdir()}
    assert {"model.onnx", "config.json", "preprocessor_config.json", "onnx_export.json"} <= names
    assert {"__init__.py", "onnx_pipeline.py", "answers.py", "audio_io.py"} <= names
    record = json.loads((folder / "onnx_export.json").read_text())
    assert set(record["max_abs_difference"]) == {"logits", "gender_logits", "window_logits", "frame_logits"}
    assert max(record["max_abs_difference"].values()) < 1e-4
    assert record["timeline_window_frames"] == 20 and record["timeline_window_s"] == pytest.approx(0.4)


def test_onnxruntime_answers_as_the_torch_pipeline_on_real_clips(exported):
    checkpoint, folder = exported
    ours = OnnxSpeechEmotionPipeline(folder)
    reference = pipeline("audio-classification", model=str(checkpoint), trust_remote_code=True)
    options = {"return_gender": True, "return_timeline": True, "timeline_window": 0.4, "top_k": 4}
    for wave in clips():
        got, expected = ours(wave, **options), reference(wave, chunk_length_s=0, **options)
        for key in ("emotion", "gender"):
            assert [e["label"] for e in got[key]] == [e["label"] for e in expected[key]]
            assert [e["score"] for e in got[key]] == pytest.approx([e["score"] for e in expected[key]], abs=1e-4)
        assert len(got["timeline"]) == len(expected["timeline"])
        for window, other in zip(got["timeline"], expected["timeline"]):
            assert (window["start"], window["end"], window["label"]) == (other["start"], other["end"], other["label"])
            assert window["scores"] == pytest.approx(other["scores"], abs=1e-4)
    with pytest.raises(ValueError, match=r"0\.4 s windows"):
        ours(clips()[0], return_timeline=True, timeline_window=1.0)
    answers = ours([clips()[0], b"not audio"], on_error="skip")
    assert isinstance(answers[0], list) and "error" in answers[1]


def test_the_exported_folder_runs_without_torch_or_transformers(exported, tmp_path):
    _, folder = exported
    soundfile.write(tmp_path / "clip.wav", speechlike(2.0, seed=5), 16000)
    script = textwrap.dedent(f"""
        import json, sys
        sys.modules["torch"] = None  # any import of torch or transformers now fails
        sys.modules["transformers"] = None
        sys.path.insert(0, {str(folder.parent)!r})
        from {folder.name} import OnnxSpeechEmotionPipeline
        answer = OnnxSpeechEmotionPipeline({str(folder)!r})({str(tmp_path / "clip.wav")!r}, return_gender=True)
        print(json.dumps(answer))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(answer["emotion"]) == 4 and sum(e["score"] for e in answer["emotion"]) == pytest.approx(1.0)
    assert {e["label"] for e in answer["gender"]} == {"female", "male"}


def test_int8_export_is_checked_on_scores_and_answers_close_to_torch(tmp_path):
    model = tiny_model(seed=4, gender_head_trained=True)
    model.save_pretrained(tmp_path / "checkpoint")
    cli(["export-onnx", str(tmp_path / "checkpoint"), "--output", str(tmp_path / "int8"), "--quantize", "int8"])
    record = json.loads((tmp_path / "int8" / "onnx_export.json").read_text())
    assert record["quantization"] == "int8" and max(record["max_score_difference"].values()) <= 0.05
    ours = OnnxSpeechEmotionPipeline(tmp_path / "int8")
    reference = pipeline("audio-classification", model=str(tmp_path / "checkpoint"), trust_remote_code=True)
    for wave in clips()[:3]:
        got = {e["label"]: e["score"] for e in ours(wave, top_k=4)}
        expected = {e["label"]: e["score"] for e in reference(wave, top_k=4)}
        assert got == pytest.approx(expected, abs=0.05)


def test_export_cli_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli(["export-onnx", str(tmp_path / "nothing"), "--output", str(tmp_path / "out")])
    assert stopped.value.code == 2
    assert "no config.json" in capsys.readouterr().err


def test_predict_labels_files_with_an_exported_model(exported, tmp_path):
    _, folder = exported
    soundfile.write(tmp_path / "a.wav", speechlike(1.4, seed=6), 16000)
    (tmp_path / "b.wav").write_bytes(b"not audio at all")
    with pytest.raises(SystemExit) as stopped:  # b.wav fails: exit code 1, a.wav labelled
        cli(["predict", str(folder), str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "--output",
             str(tmp_path / "out.jsonl"), "--timeline", "--window", "0.4"])  # fmt: skip
    assert stopped.value.code == 1
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [row["path"].rsplit("/", 1)[-1] for row in rows] == ["a.wav", "b.wav"]
    assert rows[0]["error"] == "" and rows[0]["gender"] in {"female", "male"} and json.loads(rows[0]["timeline"])
    assert "corrupt" in rows[1]["error"]
