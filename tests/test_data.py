"""Decoding, resampling, bad input, the decode scan, the collator, folds and metrics."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import tiny_config
from corpus_trees import write_emodb

from gmp_tl_hf import default_feature_extractor
from gmp_tl_hf.arguments import DataArguments
from gmp_tl_hf.data import SERCollator, scan_audio, with_crop
from gmp_tl_hf.data.corpora import load_corpus, load_manifest
from gmp_tl_hf.data.metrics import aggregate_folds, make_compute_metrics, ser_metrics
from gmp_tl_hf.data.splits import assign_folds, balanced_speaker_folds, fold_split, split_validation
from gmp_tl_hf.models.audio_io import AudioError, load_waveform, to_mono


def tone(rate: int, seconds: float = 1.0, frequency: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [22050, 44100, 48000, 8000])
def test_resampling_matches_the_tone_sampled_at_16k(tmp_path, rate):
    soundfile.write(tmp_path / "tone.wav", tone(rate), rate, subtype="FLOAT")
    for wave in (load_waveform(tmp_path / "tone.wav"), load_waveform(tone(rate), sampling_rate=rate)):
        reference = tone(16000)
        assert wave.dtype == np.float32 and abs(len(wave) - 16000) <= 1
        middle = slice(800, 15200)  # away from the filter's edge transients
        assert np.abs(wave[middle] - reference[middle]).max() < 1e-3


def test_downmix_average_or_one_channel(tmp_path):
    left, right = tone(16000), tone(16000, frequency=220)
    soundfile.write(tmp_path / "stereo.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_waveform(tmp_path / "stereo.wav"), (left + right) / 2, atol=1e-6)
    np.testing.assert_allclose(load_waveform(tmp_path / "stereo.wav", channel=1), right, atol=1e-6)
    np.testing.assert_allclose(to_mono(np.stack([left, right])), (left + right) / 2, atol=1e-6)  # (channels, samples)
    with pytest.raises(AudioError, match="channel 2 requested but the audio has 2 channel"):
        load_waveform(tmp_path / "stereo.wav", channel=2)


def write_bad_files(folder) -> dict[str, str]:
    """Every kind of bad clip, with the reason the loader must give."""
    folder.mkdir(parents=True, exist_ok=True)
    soundfile.write(folder / "good.wav", tone(16000, 0.5), 16000)
    soundfile.write(folder / "empty.wav", np.zeros(0, np.float32), 16000)
    soundfile.write(folder / "short.wav", tone(16000, 0.02), 16000)  # 320 samples < 400
    soundfile.write(folder / "short44k.wav", tone(44100, 0.024), 44100)  # 1058 samples -> 384 at 16 kHz
    soundfile.write(folder / "nan.wav", np.full(8000, np.nan, np.float32), 16000, subtype="FLOAT")
    (folder / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    return {
        "empty.wav": "empty audio",
        "short.wav": "320 samples at 16 kHz is shorter than one encoder frame",
        "short44k.wav": "384 samples at 16 kHz is shorter than one encoder frame",
        "nan.wav": "8000 of 8000 samples are NaN or infinite",
        "corrupt.wav": "unreadable or corrupt audio",
        "missing.wav": "file not found",
    }


def test_every_bad_input_gets_a_named_reason(tmp_path):
    reasons = write_bad_files(tmp_path)
    for name, reason in reasons.items():
        with pytest.raises(AudioError, match=reason) as error:
            load_waveform(tmp_path / name)
        assert error.value.source == str(tmp_path / name)
    assert len(load_waveform(tmp_path / "good.wav")) == 8000


def test_scan_raises_listing_all_or_skips_and_reports(tmp_path, caplog):
    reasons = write_bad_files(tmp_path / "clips")
    names = ["good.wav", *[n for n in reasons if n not in ("missing.wav", "corrupt.wav")]]
    (tmp_path / "list.csv").write_text("path,emotion\n" + "".join(f"clips/{n},neutral\n" for n in names))
    dataset = load_manifest(tmp_path / "list.csv")  # headers read fine; the decode finds the rest
    with pytest.raises(AudioError) as error:
        scan_audio(dataset)
    message = str(error.value)
    assert "4 file(s)" in message
    assert all(f"{name}: {reasons[name]}" in message for name in names[1:])
    with caplog.at_level(logging.WARNING):
        kept = scan_audio(dataset, on_error="skip")
    assert kept["id"] == ["good"] and kept["num_samples"] == [8000]
    assert sum(message.startswith("skipping") for message in caplog.messages) == 4
    assert any("skipped 4" in message for message in caplog.messages)


def make_rows(lengths: list[int], tmp_path, with_gmp: bool = True) -> list[dict]:
    config = tiny_config()
    rows = []
    for i, length in enumerate(lengths):
        path = tmp_path / f"clip{i}.wav"
        soundfile.write(
            path, np.random.default_rng(i).standard_normal(length).astype(np.float32) * 0.1, 16000, subtype="FLOAT"
        )
        row = {"audio": {"path": str(path), "bytes": None}, "emotion": i % 4, "gender": [0, 1, -1][i % 3]}
        if with_gmp:
            frames = config.num_frames(length)
            row["gmp_labels"] = [[t % 5, t % 7] for t in range(frames)]  # label = frame index: alignment is visible
        rows.append(row)
    return rows


def test_collator_pads_audio_and_frame_labels(tmp_path):
    config = tiny_config()
    rows = make_rows([16000, 9000, 12345], tmp_path)
    batch = SERCollator(default_feature_extractor(), config)(rows)
    assert batch["input_values"].shape == (3, 16000)
    assert batch["attention_mask"].sum(1).tolist() == [16000, 9000, 12345]
    assert batch["labels"].tolist() == [0, 1, 2]
    assert batch["gender_labels"].tolist() == [0, 1, -100]
    frames = config.num_frames(16000)
    assert batch["gmp_labels"].shape == (3, frames, 2)
    for i, length in enumerate([16000, 9000, 12345]):
        valid = config.num_frames(length)
        assert batch["gmp_labels"][i, :valid, 0].tolist() == [t % 5 for t in range(valid)]
        assert (batch["gmp_labels"][i, valid:] == -100).all()
    # per-clip normalisation uses true lengths: padding does not change a clip's values
    alone = SERCollator(default_feature_extractor(), config)(rows[1:2])
    torch.testing.assert_close(batch["input_values"][1, :9000], alone["input_values"][0])
    no_mask = SERCollator(default_feature_extractor(do_normalize=True), config)
    no_mask.feature_extractor.return_attention_mask = False
    assert "attention_mask" not in no_mask(rows)
    multiple = SERCollator(default_feature_extractor(), config, pad_to_multiple_of=3200)(rows)
    assert multiple["input_values"].shape[1] == 16000 and multiple["gmp_labels"].shape[1] == frames


def test_random_crop_starts_on_a_frame_and_keeps_labels_aligned(tmp_path):
    config = tiny_config()
    rows = make_rows([48000], tmp_path)
    rows[0]["crop_samples"] = 16000
    full = SERCollator(default_feature_extractor(do_normalize=False), config)(make_rows([48000], tmp_path))
    starts = set()
    collator = SERCollator(default_feature_extractor(do_normalize=False), config, seed=3)
    for epoch in range(20):
        collator.epoch = epoch
        batch = collator(rows)
        torch.testing.assert_close(collator(rows)["input_values"], batch["input_values"])  # same epoch, same crop
        assert batch["input_values"].shape == (1, 16000)
        wave = batch["input_values"][0]
        start = int(torch.nonzero((full["input_values"][0].unfold(0, 16000, 320) == wave).all(1))[0]) * 320
        starts.add(start)
        first = start // 320
        labels = batch["gmp_labels"][0, :, 1].tolist()
        assert labels == [(first + t) % 7 for t in range(config.num_frames(16000))]
    assert len(starts) > 5


def test_crops_do_not_depend_on_where_the_corpus_lies(tmp_path):
    collator = SERCollator(default_feature_extractor(), tiny_config(), seed=5)
    here = {"id": "03a01Wa", "audio": {"path": str(tmp_path / "a" / "03a01Wa.wav")}}
    there = {"id": "03a01Wa", "audio": {"path": "/elsewhere/emodb/wav/03a01Wa.wav"}}
    starts = [collator.crop_start(row, 48000, 16000) for row in (here, there)]
    assert starts[0] == starts[1]
    other = {"id": "03a02Wa", "audio": {"path": str(tmp_path / "a" / "03a02Wa.wav")}}
    assert len({collator.crop_start({**other, "id": f"x{i}"}, 48000, 16000) for i in range(20)}) > 5


def test_collator_rejects_misaligned_frame_labels(tmp_path):
    rows = make_rows([16000], tmp_path)
    rows[0]["gmp_labels"] = rows[0]["gmp_labels"][:-2]
    with pytest.raises(ValueError, match="47 frames of gmp_labels for a clip of 49 encoder frames"):
        SERCollator(default_feature_extractor(), tiny_config())(rows)


def test_with_crop_marks_training_rows(tmp_path):
    dataset = load_manifest(write_manifest(tmp_path))
    assert with_crop(dataset, 2.5)["crop_samples"] == [40000] * len(dataset)
    assert with_crop(dataset, None)["crop_samples"] == [0] * len(dataset)


def write_manifest(tmp_path):
    write_emodb(tmp_path / "c", ["a.wav", "b.wav"])
    (tmp_path / "m.csv").write_text("path,emotion,speaker,gender\nc/a.wav,sad,s1,f\nc/b.wav,happy,s2,m\n")
    return tmp_path / "m.csv"


# ---------------------------------------------------------------- folds


def test_loso_folds_never_share_a_session_or_speaker(tmp_path):
    from corpus_trees import write_iemocap

    dataset = assign_folds(load_corpus("iemocap", write_iemocap(tmp_path)), "loso")
    assert sorted(set(dataset["fold"])) == [0, 1, 2, 3, 4]
    for fold in range(5):
        split = fold_split(dataset, fold)
        assert set(split["test"]["session"]) == {f"Ses0{fold + 1}"}
        assert not set(split["train"]["session"]) & set(split["test"]["session"])
        assert not set(split["train"]["speaker"]) & set(split["test"]["speaker"])
        assert len(split["train"]) + len(split["test"]) == 5531
    ten = assign_folds(dataset, "speakers-10")
    assert all(len(set(fold_split(ten, k)["test"]["speaker"])) == 1 for k in range(10))
    pairs = assign_folds(dataset, "leave-2-speakers-out")
    assert sorted(set(pairs["fold"])) == [0, 1, 2, 3, 4]
    for k in range(5):
        split = fold_split(pairs, k)
        assert len(set(split["test"]["speaker"])) == 2 and not set(split["test"]["speaker"]) & set(
            split["train"]["speaker"]
        )
    with pytest.raises(ValueError, match="unknown fold protocol"):
        assign_folds(dataset, "random")


def test_speaker_folds_are_gender_balanced_and_seeded(emodb_dir):
    dataset = assign_folds(load_corpus("emodb", emodb_dir), "speakers-5", seed=3)
    for fold in range(5):
        split = fold_split(dataset, fold)
        test_speakers = {(row["speaker"], row["gender"]) for row in split["test"]}
        assert sorted(g for _, g in test_speakers) == [0, 1]  # one female, one male
        assert not {s for s, _ in test_speakers} & set(split["train"]["speaker"])
    assert balanced_speaker_folds(dataset, 5, seed=3) == balanced_speaker_folds(dataset, 5, seed=3)
    assert balanced_speaker_folds(dataset, 5, seed=3) != balanced_speaker_folds(dataset, 5, seed=4)
    with pytest.raises(ValueError, match="leave-one-session-out needs a session"):
        assign_folds(dataset, "loso")


def test_validation_split_stays_inside_the_training_folds(emodb_dir):
    dataset = assign_folds(load_corpus("emodb", emodb_dir), "speakers-5")
    split = fold_split(dataset, 2)
    by_speaker = split_validation(split["train"], "speakers", 2, seed=0)
    assert len(set(by_speaker["validation"]["speaker"])) == 2
    assert sorted(set(by_speaker["validation"]["gender"])) == [0, 1]
    assert not set(by_speaker["validation"]["speaker"]) & set(by_speaker["train"]["speaker"])
    assert not set(by_speaker["validation"]["speaker"]) & set(split["test"]["speaker"])
    default = split_validation(split["train"])  # speaker-disjoint, one speaker per gender
    assert set(default["validation"]["speaker"]).isdisjoint(default["train"]["speaker"])
    assert sorted(set(default["validation"]["gender"])) == [0, 1]
    assert DataArguments().validation == "speakers"
    assert DataArguments(data_dir="corpus").data_dir == str(Path.cwd() / "corpus")  # records compare the folder
    with pytest.raises(ValueError, match="whole number of speakers"):
        split_validation(split["train"], "speakers", 0.1)
    random = split_validation(split["train"], "random", 0.1, seed=0)
    assert len(random["validation"]) + len(random["train"]) == len(split["train"])
    assert set(random["validation"]["emotion"]) == set(split["train"]["emotion"])  # stratified
    assert set(random["validation"]["id"]).isdisjoint(split["test"]["id"])


# ---------------------------------------------------------------- metrics


def test_metrics_on_a_hand_computed_confusion_matrix():
    # rows = reference, cols = prediction
    #            pred: neu hap ang sad
    # neu (4)          3   1   0   0   recall 0.75
    # hap (2)          0   1   1   0   recall 0.5
    # ang (3)          0   0   3   0   recall 1.0
    # sad (1)          1   0   0   0   recall 0.0
    references = [0, 0, 0, 0, 1, 1, 2, 2, 2, 3]
    predictions = [0, 0, 0, 1, 1, 2, 2, 2, 2, 0]
    scores = ser_metrics(references, predictions, ["neu", "hap", "ang", "sad"])
    assert scores["war"] == pytest.approx(7 / 10)
    assert scores["uar"] == pytest.approx((0.75 + 0.5 + 1.0 + 0.0) / 4)
    assert scores["recall"] == {"neu": 0.75, "hap": 0.5, "ang": 1.0, "sad": 0.0}
    assert scores["confusion_matrix"] == [[3, 1, 0, 0], [0, 1, 1, 0], [0, 0, 3, 0], [1, 0, 0, 0]]
    f1 = [2 * 3 / (2 * 3 + 1 + 1), 2 * 1 / (2 * 1 + 1 + 1), 2 * 3 / (2 * 3 + 1), 0.0]
    assert scores["macro_f1"] == pytest.approx(np.mean(f1))


def test_uar_ignores_classes_absent_from_the_references():
    scores = ser_metrics([0, 0, 1], [0, 2, 1], ["a", "b", "c"])
    assert scores["uar"] == pytest.approx((0.5 + 1.0) / 2)
    assert "c" not in scores["recall"]


def test_trainer_compute_metrics_and_fold_aggregation():
    from transformers import EvalPrediction

    compute = make_compute_metrics({0: "neu", 1: "sad"})
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])
    gender_logits = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    out = compute(
        EvalPrediction(
            predictions=(logits, gender_logits), label_ids=(np.array([0, 1, 1, 1]), np.array([0, 1, 0, -100]))
        )
    )
    assert out == pytest.approx(
        {
            "war": 0.75,
            "uar": (1 + 2 / 3) / 2,
            "macro_f1": out["macro_f1"],
            "recall_neu": 1.0,
            "recall_sad": 2 / 3,
            "gender_accuracy": 2 / 3,
        }
    )
    folds = [ser_metrics([0, 1], [0, 1], ["a", "b"]), ser_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["a", "b"])]
    summary = aggregate_folds(folds)
    assert summary["war_mean"] == pytest.approx((1.0 + 0.75) / 2)
    assert summary["war_std"] == pytest.approx(0.125)
    assert summary["pooled_confusion_matrix"] == [[2, 1], [0, 3]]
    assert summary["pooled_uar"] == pytest.approx((2 / 3 + 1) / 2)


def test_evaluate_module_loads_offline():
    import evaluate

    from gmp_tl_hf.data.metrics import SER_METRIC_PATH

    metric = evaluate.load(SER_METRIC_PATH)
    scores = metric.compute(predictions=[0, 1, 1, 2], references=[0, 1, 2, 2], label_names=["a", "b", "c"])
    assert scores["war"] == pytest.approx(0.75) and scores["uar"] == pytest.approx((1 + 1 + 0.5) / 3)
