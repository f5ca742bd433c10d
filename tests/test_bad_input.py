"""Bad input gets a clear answer: each case of the README's "Bad input" table, as a test."""

from __future__ import annotations

import errno
import logging

import numpy as np
import pytest
import soundfile
from conftest import speechlike, tiny_model
from corpus_trees import wav_bytes, write_emodb
from datasets import ClassLabel, Dataset, DatasetDict, Features
from transformers import pipeline

from gmp_tl_hf import cli
from gmp_tl_hf.cli import main
from gmp_tl_hf.data.corpora import load_emodb, load_manifest
from gmp_tl_hf.fold_data import missing_classes
from gmp_tl_hf.models.audio_io import AudioError, load_waveform


@pytest.fixture
def clips(tmp_path):
    for name in ("a", "b", "c", "d"):
        (tmp_path / f"{name}.wav").write_bytes(wav_bytes(seed=ord(name)))
    return tmp_path


def write(path, text: str, encoding: str = "utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_a_row_that_stops_short_names_file_and_line(clips, caplog):
    manifest = write(clips / "m.csv", "path,emotion,gender\na.wav,happy,f\nb.wav\nc.wav,,m\nd.wav,sad,x\n")
    with pytest.raises(AudioError) as raised:
        load_manifest(manifest)
    message = str(raised.value)
    assert "3 bad row(s)" in message
    assert f"{manifest}:3: no emotion" in message and f"{manifest}:4: no emotion" in message
    assert f"{manifest}:5: gender 'x' is not one of female/male" in message
    with caplog.at_level(logging.WARNING):
        dataset = load_manifest(manifest, on_error="skip")
    assert dataset["id"] == ["a"] and dataset.features["emotion"].names == ["happy"]  # no class "None"
    assert caplog.text.count("skipping") == 3


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("path,emotion\r\na.wav,happy\r\nb.wav,sad\r\n", "utf-8-sig"),  # Excel's "CSV UTF-8": BOM + CRLF
        ("path;emotion\na.wav;happy\nb.wav;sad\n", "utf-8"),  # European Excel
        ("path\temotion\na.wav\thappy\nb.wav\tsad\n", "utf-8"),  # TSV
    ],
    ids=["bom-crlf", "semicolon", "tab"],
)
def test_manifest_dialects_load(clips, text, encoding):
    dataset = load_manifest(write(clips / "m.csv", text, encoding))
    assert dataset["id"] == ["a", "b"] and dataset.features["emotion"].names == ["happy", "sad"]


def test_paths_are_relative_to_the_manifest_folder(clips, tmp_path, monkeypatch):
    (clips / "lists").mkdir()
    manifest = write(clips / "lists" / "m.csv", "path,emotion\n../a.wav,happy\n")
    monkeypatch.chdir(tmp_path.parent)  # the working directory does not matter
    assert load_manifest(manifest)["audio"][0]["path"] == str((clips / "a.wav").resolve())


def test_the_same_file_twice_or_a_speaker_with_two_genders(clips, caplog):
    twice = write(clips / "twice.csv", "path,emotion\na.wav,happy\nb.wav,sad\n./a.wav,sad\n")
    with pytest.raises(AudioError, match=r"a\.wav: the same file is listed twice"):
        load_manifest(twice)
    with caplog.at_level(logging.WARNING):
        assert load_manifest(twice, on_error="skip")["id"] == ["a", "b"]
    assert "listed twice" in caplog.text
    same_id = write(clips / "ids.csv", "path,emotion,id\na.wav,happy,x1\nb.wav,sad,x1\n")
    with pytest.raises(AudioError, match=r"the same id 'x1' is listed twice"):
        load_manifest(same_id)
    mixed = write(clips / "mixed.csv", "path,emotion,gender,speaker\na.wav,happy,f,s1\nb.wav,sad,m,s1\n")
    with pytest.raises(ValueError, match=r"speaker\(s\) \['s1'\] appear with two genders"):
        load_manifest(mixed, on_error="skip")


def test_stray_macos_files_in_a_corpus_folder(tmp_path, caplog):
    write_emodb(tmp_path, ["03a01Wa.wav", "08a01Fa.wav"])
    (tmp_path / "._03a01Wa.wav").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    with pytest.raises(AudioError, match=r"_03a01Wa\.wav: not an EmoDB file name"):
        load_emodb(tmp_path)
    with caplog.at_level(logging.WARNING):
        dataset = load_emodb(tmp_path, on_error="skip")
    assert sorted(dataset["id"]) == ["03a01Wa", "08a01Fa"]
    assert caplog.text.count("skipping") == 1


def test_a_file_whose_extension_lies_is_decoded_by_content(tmp_path):
    wave = speechlike(0.5, sampling_rate=24414)
    soundfile.write(tmp_path / "clip.mp3", wave, 24414, format="FLAC")  # FLAC content, .mp3 name, odd rate
    decoded = load_waveform(str(tmp_path / "clip.mp3"))
    assert decoded.shape == (8000,)  # 0.5 s resampled to 16 kHz
    soundfile.write(tmp_path / "hi.wav", speechlike(0.25, sampling_rate=96000), 96000)
    assert load_waveform(str(tmp_path / "hi.wav")).shape == (4000,)


@pytest.mark.parametrize("shape", [(4, 16000), (16000, 4)])
def test_an_array_with_more_than_two_channels_is_refused(shape):
    with pytest.raises(AudioError, match="pass a list of clips"):
        load_waveform(np.zeros(shape, dtype=np.float32), 16000)


def test_two_channels_either_way_round_are_averaged():
    left, right = speechlike(0.5), speechlike(0.5, seed=1)
    first = load_waveform(np.stack([left, right]), 16000)
    last = load_waveform(np.stack([left, right], axis=1), 16000)
    np.testing.assert_allclose(first, (left + right) / 2, atol=1e-6)
    np.testing.assert_allclose(last, first, atol=1e-6)


def test_one_bad_clip_in_a_batch_costs_only_itself(tmp_path):
    model = tiny_model(seed=3)
    model.save_pretrained(tmp_path / "model")
    classify = pipeline("audio-classification", model=str(tmp_path / "model"), trust_remote_code=True)
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt nonsense")
    clips = [speechlike(1.0, seed=i) for i in range(5)]
    inputs = [*clips[:2], str(tmp_path / "broken.wav"), *clips[2:]]
    with pytest.raises(ValueError, match=r"1 of 6 inputs: item 2: .*broken\.wav: unreadable"):  # remote-code AudioError
        classify(inputs, batch_size=8)
    answers = classify(inputs, batch_size=8, on_error="skip")
    assert set(answers[2]) == {"error"} and "broken.wav" in answers[2]["error"]
    for clip, answer in zip(clips, answers[:2] + answers[3:]):
        expected = classify(clip)
        assert [item["label"] for item in answer] == [item["label"] for item in expected]
        assert answer[0]["score"] == pytest.approx(expected[0]["score"], abs=1e-5)


def test_a_split_missing_a_class_is_said_and_recorded():
    features = Features({"emotion": ClassLabel(names=["angry", "happy", "sad"])})
    splits = DatasetDict(
        train=Dataset.from_dict({"emotion": [0, 1, 2]}, features=features),
        test=Dataset.from_dict({"emotion": [0, 0, 1]}, features=features),
    )
    assert missing_classes(splits, ["angry", "happy", "sad"]) == ["no test clips of ['sad']"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("training:\n  learning_rat: 0.1\n", "unknown keys in the training/mtl sections: ['learning_rat']"),
        ("training:\n  learning_rate: fast\n", "learning_rate must be float, got 'fast'"),
        ("training:\n  num_train_epochs: 0\n", "num_train_epochs must be > 0 (or max_steps > 0), got 0"),
        ("model:\n  pooling: max\n", "pooling must be one of ('mean', 'attentive', 'statistics'), got 'max'"),
        ("model:\n  emotion_input: last\n", "emotion_input must be one of ('projected', 'all_layers'), got 'last'"),
        ("gmp:\n  cluster_sizes: [1]\n", "cluster_sizes must be a non-empty list of K >= 2, got [1]"),
        ("data:\n  validation: everyone\n", "validation must be one of ('speakers', 'random', 'none')"),
    ],
    ids=["unknown-key", "wrong-type", "impossible", "bad-choice", "bad-input-choice", "bad-k", "bad-validation"],
)
def test_a_bad_config_stops_at_start_in_one_line(tmp_path, capsys, emodb_dir, config, message):
    data = f"data:\n  dataset: emodb\n  data_dir: {emodb_dir}\n"
    text = config.replace("data:\n", data) if config.startswith("data:") else data + config
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(SystemExit) as stop:
        main(["cv", "--config", str(tmp_path / "c.yaml"), "--output_dir", str(tmp_path / "run")])
    error = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and message in error and "\n" not in error
    assert not list((tmp_path / "run").glob("fold*"))  # nothing was trained


def test_a_data_folder_that_does_not_exist_stops_at_start(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(f"data:\n  dataset: emodb\n  data_dir: {tmp_path / 'nowhere'}\n")
    with pytest.raises(SystemExit):
        main(["cv", "--config", str(tmp_path / "c.yaml"), "--output_dir", str(tmp_path / "run")])
    assert f"no EmoDB wav files in {tmp_path / 'nowhere'}" in capsys.readouterr().err
    # the command's log handlers left with it: later log lines (a notebook's next command) stay out of run.log
    logged = (tmp_path / "run" / "run.log").read_text()
    assert "stopped" in logged  # the traceback, for --debug's readers
    logging.getLogger("gmp_tl_hf").warning("after the command")
    assert (tmp_path / "run" / "run.log").read_text() == logged


def test_a_full_disk_is_one_line_that_says_the_run_resumes(monkeypatch, capsys):
    def disk_full(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "runs/x/checkpoint-8/optimizer.pt")

    monkeypatch.setitem(cli._commands.__globals__, "_commands", lambda: {"cv": disk_full})
    with pytest.raises(SystemExit) as stop:
        cli.main(["cv"])
    error = capsys.readouterr().err
    assert stop.value.code == 2 and "the disk is full" in error and "it resumes" in error
