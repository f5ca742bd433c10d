"""The audio-classification pipeline and loading a checkpoint without this package (trust_remote_code)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile
import soxr
import torch
from conftest import speechlike, tiny_model
from transformers import pipeline
from transformers.testing_utils import CaptureLogger

from gmp_tl_hf import default_feature_extractor


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoint")
    model = tiny_model(seed=3, gender_head_trained=True)
    model.save_pretrained(path)
    default_feature_extractor().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def classifier(checkpoint):
    return pipeline("audio-classification", model=str(checkpoint), trust_remote_code=True)


def reference_probs(checkpoint, waveform_16k: np.ndarray) -> dict[str, float]:
    """What the pipeline should say: feature extractor + model + softmax, computed by hand."""
    model = tiny_model(seed=3)
    features = default_feature_extractor()(waveform_16k, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        probs = model(features.input_values).logits[0].softmax(-1)
    return {model.config.id2label[i]: float(p) for i, p in enumerate(probs)}


def as_dict(result: list[dict]) -> dict[str, float]:
    return {item["label"]: item["score"] for item in result}


def assert_same_scores(result, expected, atol=1e-5):
    got = as_dict(result)
    assert got.keys() == expected.keys()
    for label, score in expected.items():
        assert got[label] == pytest.approx(score, abs=atol)


def test_checkpoint_carries_code_feature_extractor_and_pipeline(checkpoint):
    names = {p.name for p in checkpoint.iterdir()}
    assert {
        "modeling_hubert_gmp.py",
        "configuration_hubert_gmp.py",
        "pipeline_hubert_gmp.py",
        "audio_io.py",
        "spectral.py",
    } <= names
    assert "preprocessor_config.json" in names
    config = json.loads((checkpoint / "config.json").read_text())
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForAudioClassification"}
    assert config["custom_pipelines"]["audio-classification"]["impl"] == "pipeline_hubert_gmp.SpeechEmotionPipeline"


def test_numpy_input_gives_the_standard_output(checkpoint, classifier):
    wave = speechlike(1.5)
    result = classifier(wave)
    assert [set(item) for item in result] == [{"label", "score"}] * 4
    assert [item["score"] for item in result] == sorted((item["score"] for item in result), reverse=True)
    assert_same_scores(result, reference_probs(checkpoint, wave))
    assert len(classifier(wave, top_k=2)) == 2


@pytest.mark.parametrize("rate", [22050, 44100, 48000])
def test_other_sampling_rates_are_resampled(checkpoint, classifier, rate):
    wave = speechlike(1.2, sampling_rate=rate)
    expected = reference_probs(checkpoint, soxr.resample(wave, rate, 16000, quality="HQ"))
    assert_same_scores(classifier({"array": wave, "sampling_rate": rate}), expected)
    assert_same_scores(classifier(wave, sampling_rate=rate), expected)


def test_file_paths_any_rate_and_stereo(checkpoint, classifier, tmp_path):
    wave = speechlike(1.0, sampling_rate=44100)
    expected = reference_probs(checkpoint, soxr.resample(wave, 44100, 16000, quality="HQ"))
    soundfile.write(tmp_path / "clip.flac", wave, 44100)
    assert_same_scores(classifier(str(tmp_path / "clip.flac")), expected, atol=1e-3)  # FLAC is 16-bit
    stereo = np.stack([wave, 0.5 * wave], axis=1)
    soundfile.write(tmp_path / "stereo.wav", stereo, 44100, subtype="FLOAT")
    left = classifier(str(tmp_path / "stereo.wav"), channel=0)
    assert_same_scores(left, expected)
    mean = classifier(str(tmp_path / "stereo.wav"))
    assert_same_scores(mean, reference_probs(checkpoint, soxr.resample(0.75 * wave, 44100, 16000, quality="HQ")))


def test_a_sampling_rate_given_when_the_pipeline_is_made_applies_to_every_call(checkpoint):
    wave = speechlike(1.0, sampling_rate=22050)
    made_with_rate = pipeline(
        "audio-classification", model=str(checkpoint), trust_remote_code=True, sampling_rate=22050
    )
    per_call = pipeline("audio-classification", model=str(checkpoint), trust_remote_code=True)
    assert_same_scores(made_with_rate(wave), as_dict(per_call(wave, sampling_rate=22050)))


def test_gender_and_timeline_on_request(classifier):
    result = classifier(speechlike(2.0), return_gender=True, return_timeline=True, timeline_window=0.5)
    assert set(result) == {"emotion", "gender", "timeline"}
    assert {item["label"] for item in result["gender"]} == {"female", "male"}
    assert sum(item["score"] for item in result["gender"]) == pytest.approx(1.0)
    timeline = result["timeline"]
    assert [segment["start"] for segment in timeline] == [0.0, 0.5, 1.0, 1.5]
    assert timeline[-1]["end"] == pytest.approx(1.98)  # 99 frames of 20 ms
    assert all(segment["label"] in {"neutral", "happy", "angry", "sad"} for segment in timeline)
    only_gender = classifier(speechlike(1.0), return_gender=True)
    assert set(only_gender) == {"emotion", "gender"}
    assert set(timeline[0]["scores"]) == {"neutral", "happy", "angry", "sad"}
    assert timeline[0]["score"] == max(timeline[0]["scores"].values())


@pytest.mark.parametrize("pooling", ["mean", "attentive", "statistics"])
@pytest.mark.parametrize("emotion_head", ["linear", "am_softmax"])
def test_a_timeline_window_spanning_the_clip_repeats_the_clip_answer(tmp_path, pooling, emotion_head):
    model = tiny_model(seed=5, pooling=pooling, emotion_head=emotion_head)
    with torch.no_grad():  # confident heads, as after training
        model.projector.weight.mul_(30)
    model.save_pretrained(tmp_path)
    classify = pipeline("audio-classification", model=str(tmp_path), trust_remote_code=True)
    for seconds in (0.7, 2.3):
        result = classify(speechlike(seconds, f0=220.0), return_timeline=True, timeline_window=seconds + 1, top_k=4)
        (window,) = result["timeline"]
        assert window["label"] == result["emotion"][0]["label"]
        for item in result["emotion"]:
            assert window["scores"][item["label"]] == pytest.approx(item["score"], abs=1e-4)


def test_an_untrained_gender_head_is_refused(tmp_path):
    tiny_model(seed=3).save_pretrained(tmp_path)  # gender_head_trained defaults to False
    classify = pipeline("audio-classification", model=str(tmp_path), trust_remote_code=True)
    with pytest.raises(ValueError, match="gender head was not trained for its encoder"):
        classify(speechlike(1.0), return_gender=True)
    assert len(classify(speechlike(1.0))) == 4  # the emotion answer is still given


def test_batched_calls_match_single_calls_in_input_order(classifier, tmp_path):
    waves = [speechlike(seconds, seed=i) for i, seconds in enumerate([0.6, 1.7, 1.1, 2.3, 0.9])]
    soundfile.write(tmp_path / "c.wav", waves[2], 16000, subtype="FLOAT")
    inputs = [waves[0], waves[1], str(tmp_path / "c.wav"), {"array": waves[3], "sampling_rate": 16000}, waves[4]]
    single = [classifier(item) for item in inputs]
    for batch_size in (2, 5):
        batched = classifier(inputs, batch_size=batch_size)
        assert len(batched) == len(inputs)
        for one, many in zip(single, batched):
            assert_same_scores(many, as_dict(one))


def test_bad_input_names_the_file_and_the_reason(classifier, tmp_path):
    # The pipeline runs the checkpoint's copy of audio_io, so its AudioError is matched as the ValueError it is.
    with pytest.raises(ValueError, match=r"missing\.wav: file not found"):
        classifier(str(tmp_path / "missing.wav"))
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(ValueError, match=r"corrupt\.wav: unreadable or corrupt audio"):
        classifier(str(tmp_path / "corrupt.wav"))
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match=r"empty\.wav: empty audio"):
        classifier(str(tmp_path / "empty.wav"))
    soundfile.write(tmp_path / "short.wav", np.zeros(300, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match=r"short\.wav: 300 samples at 16 kHz is shorter than one encoder frame"):
        classifier(str(tmp_path / "short.wav"))
    nan = speechlike(1.0)
    nan[100:110] = np.nan
    with pytest.raises(ValueError, match="10 of 16000 samples are NaN or infinite"):
        classifier(nan)
    with pytest.raises(ValueError, match='needs "sampling_rate"'):
        classifier({"array": speechlike(1.0)})


def test_real_emodb_file(emodb_dir, classifier):
    result = classifier(str(emodb_dir / "03a01Wa.wav"), return_gender=True)
    assert len(result["emotion"]) == 4
    assert sum(item["score"] for item in result["emotion"]) == pytest.approx(1.0, abs=1e-5)


def test_fresh_process_without_the_package(checkpoint, tmp_path):
    """Model, Auto classes and pipeline load from the folder alone in a process that never imports gmp_tl_hf."""
    wave = speechlike(1.3, sampling_rate=48000)
    np.save(tmp_path / "wave.npy", wave)
    soundfile.write(tmp_path / "clip.wav", wave, 48000, subtype="FLOAT")
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification, pipeline
        path = {str(checkpoint)!r}
        config = AutoConfig.from_pretrained(path, trust_remote_code=True)
        model = AutoModelForAudioClassification.from_pretrained(path, trust_remote_code=True)
        base = AutoModel.from_pretrained(path, trust_remote_code=True)
        classify = pipeline("audio-classification", model=path, trust_remote_code=True)
        wave = np.load({str(tmp_path / "wave.npy")!r})
        print(json.dumps({{
            "classes": [type(config).__name__, type(model).__name__, type(base).__name__, type(classify).__name__],
            "array": classify({{"array": wave, "sampling_rate": 48000}}),
            "file": classify({str(tmp_path / "clip.wav")!r}),
            "imported": "gmp_tl_hf" in sys.modules,
        }}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["classes"] == [
        "HubertGMPConfig",
        "HubertForGMPEmotion",
        "HubertForGMPEmotion",
        "SpeechEmotionPipeline",
    ]
    assert report["imported"] is False
    expected = reference_probs(checkpoint, soxr.resample(wave, 48000, 16000, quality="HQ"))
    assert_same_scores(report["array"], expected)
    assert_same_scores(report["file"], expected)


LOCAL_ENCODER = {"num_hidden_layers": 1, "feat_extract_norm": "layer", "conv_bias": True}


@pytest.mark.parametrize(
    ("pooling", "emotion_input"),
    [("mean", "projected"), ("attentive", "projected"), ("statistics", "projected"), ("statistics", "all_layers")],
)
@pytest.mark.parametrize(
    ("gender_input", "spectral"), [("statistics", False), ("embedding", False), ("statistics", True)]
)
def test_chunked_long_recording_stitches_the_exact_frames(tmp_path, pooling, emotion_input, gender_input, spectral):
    """With an encoder whose frames see only nearby audio (attention output zeroed, no GroupNorm over
    time), frames encoded in chunks with context are the recording's own frames: the chunked answer,
    gender and timeline equal the whole-recording ones."""
    model = tiny_model(seed=5, pooling=pooling, emotion_input=emotion_input, gender_input=gender_input,
                       gender_spectral_features=spectral, gender_head_trained=True, **LOCAL_ENCODER)  # fmt: skip
    with torch.no_grad():
        for layer in model.hubert.encoder.layers:
            layer.attention.out_proj.weight.zero_()
        model.classifier.weight.mul_(20)  # confident heads, so that a misplaced frame would show
        if spectral:  # spectral statistics that decide the gender answer, as a refit would weigh them
            model.spectral_gender_weight.normal_(std=0.02)
    model.save_pretrained(tmp_path)
    default_feature_extractor().save_pretrained(tmp_path)
    classify = pipeline("audio-classification", model=str(tmp_path), trust_remote_code=True)
    wave = np.concatenate([speechlike(4.03, f0=f0, seed=i) for i, f0 in enumerate((110, 220, 160))])
    calls = []
    encode = classify.model.encode_frames
    classify.model.encode_frames = lambda *args, **kwargs: calls.append(args[0].shape[1]) or encode(*args, **kwargs)
    options = {"return_gender": True, "return_timeline": True, "timeline_window": 0.5}
    chunked = classify(wave, chunk_length_s=2.0, stride_length_s=0.5, **options)
    assert len(calls) == 7 and max(calls) <= 16000 * 3 + 400  # 12.09 s in 2 s chunks, 0.5 s context each side
    whole = classify(wave, chunk_length_s=0, **options)
    assert len(calls) == 7  # the whole recording went through forward in one piece
    assert_same_scores(chunked["emotion"], as_dict(whole["emotion"]), atol=1e-4)
    assert_same_scores(chunked["gender"], as_dict(whole["gender"]), atol=1e-4)
    assert len(chunked["timeline"]) == len(whole["timeline"]) == 25
    for ours, reference in zip(chunked["timeline"], whole["timeline"]):
        assert (ours["start"], ours["end"]) == (reference["start"], reference["end"])
        assert ours["scores"] == pytest.approx(reference["scores"], abs=1e-4)


def test_long_recordings_in_a_batch_are_chunked_one_by_one(classifier):
    """A list mixing short clips and a long recording: the long one goes through the chunked path, the
    others are batched as usual, and every answer comes back in input order."""
    short = [speechlike(1.0, seed=1), speechlike(1.5, seed=2)]
    long = speechlike(7.0, seed=3)
    mixed = classifier([short[0], long, short[1]], batch_size=2, chunk_length_s=2.0, stride_length_s=0.5)
    alone = [classifier(wave, chunk_length_s=2.0, stride_length_s=0.5) for wave in (short[0], long, short[1])]
    for got, expected in zip(mixed, alone):
        assert_same_scores(got, as_dict(expected), atol=1e-5)
    timeline = classifier(long, chunk_length_s=2.0, return_timeline=True, timeline_window=7.0)["timeline"]
    assert len(timeline) == 1 and timeline[0]["end"] == pytest.approx(7.0, abs=0.03)
    assert timeline[0]["scores"] == pytest.approx(as_dict(alone[1]), abs=1e-4)  # the window spanning it all


def test_a_recording_whose_frame_features_grow_large_is_warned_about(classifier, monkeypatch):
    """The chunked path bounds the encoder's memory, not the frame features kept until pooling: past a
    threshold (4 GiB; lowered here) one warning says how much and what to do; short clips stay silent."""
    module = sys.modules[type(classifier).__module__]
    monkeypatch.setattr(module, "FRAME_FEATURES_WARNING_BYTES", 1000)
    with CaptureLogger(module.logger) as captured:
        classifier(speechlike(1.0), chunk_length_s=2.0)  # one chunk: the unchunked path
    assert captured.out == ""
    with CaptureLogger(module.logger) as captured:
        classifier(speechlike(7.0), chunk_length_s=2.0)
    frames = classifier.model.num_frames(7 * 16000)
    size = frames * classifier.model.emotion_frame_size * 4 / 1e9
    assert captured.out.count("\n") == 1 and f"keeps {size:.1f} GB of frame features" in captured.out
    assert "split it into shorter files" in captured.out


def test_chunk_settings_are_checked(classifier):
    with pytest.raises(ValueError, match="chunk_length_s must be >= 0"):
        classifier(speechlike(1.0), chunk_length_s=-1)
