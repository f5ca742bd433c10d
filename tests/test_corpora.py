"""Corpus loaders on synthetic release trees and on the real EmoDB."""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from pathlib import Path

import pytest
from corpus_trees import IEMOCAP_RAW_COUNTS, write_cremad, write_emodb, write_iemocap, write_ravdess

from gmp_tl_hf.data.corpora import class_counts, load_audiofolder, load_corpus, load_iemocap, load_manifest
from gmp_tl_hf.data.corpora.iemocap import STANDARD_COUNTS, speaker_of
from gmp_tl_hf.models.audio_io import AudioError


@pytest.fixture(scope="module")
def iemocap_root(tmp_path_factory):
    return write_iemocap(tmp_path_factory.mktemp("iemocap"))


def test_iemocap_standard_four_classes(iemocap_root):
    dataset = load_iemocap(iemocap_root)
    assert len(dataset) == 5531
    assert class_counts(dataset) == STANDARD_COUNTS == {"neutral": 1708, "happy": 1636, "angry": 1103, "sad": 1084}
    assert dataset.features["emotion"].names == ["neutral", "happy", "angry", "sad"]
    assert set(dataset.column_names) == {"id", "audio", "emotion", "gender", "speaker", "session", "duration"}
    assert sorted(set(dataset["session"])) == ["Ses01", "Ses02", "Ses03", "Ses04", "Ses05"]
    assert len(set(dataset["speaker"])) == 10
    assert dataset[0]["audio"]["path"].endswith(f"{dataset[0]['id']}.wav")
    assert dataset[0]["duration"] == pytest.approx(0.05)


def test_iemocap_gender_comes_from_the_speaker_not_the_dialog_lead(iemocap_root):
    assert speaker_of("Ses01F_impro01_M013") == ("Ses01M", "male")
    assert speaker_of("Ses03M_script02_1_F007") == ("Ses03F", "female")
    dataset = load_iemocap(iemocap_root)
    genders = dataset.features["gender"].names
    mixed = [row for row in dataset if row["id"].startswith("Ses01F") and row["id"].rsplit("_", 1)[1][0] == "M"]
    assert mixed, "the synthetic tree must contain male turns in female-led dialogs"
    assert {genders[row["gender"]] for row in mixed} == {"male"}
    assert {row["speaker"] for row in mixed} == {"Ses01M"}


def test_iemocap_count_check_catches_an_incomplete_release(tmp_path):
    counts = dict(IEMOCAP_RAW_COUNTS, sad=1000)
    root = write_iemocap(tmp_path, counts)
    with pytest.raises(ValueError, match=r"differ from the standard .* \(5531\)"):
        load_iemocap(root)
    assert len(load_iemocap(root, sessions=(1, 2))) < 5531  # a subset is not checked


def test_iemocap_raw_labels_and_missing_files(tmp_path, caplog):
    root = write_iemocap(tmp_path)
    raw = load_iemocap(root, label_map=None)
    assert len(raw) == sum(IEMOCAP_RAW_COUNTS.values())
    gone = [Path(cell["path"]) for cell in load_iemocap(root)["audio"][100:103]]
    for path in gone:
        path.unlink()
    with pytest.raises(AudioError, match="3 file\\(s\\)") as error:
        load_iemocap(root, check_counts=False)
    assert all(f"{path}: file not found" in str(error.value) for path in gone)
    with caplog.at_level(logging.WARNING):
        kept = load_iemocap(root, on_error="skip", check_counts=False)
    assert len(kept) == 5531 - 3
    assert sum("skipping" in message and "file not found" in message for message in caplog.messages) == 3


def test_unknown_labels_are_an_error(tmp_path):
    root = write_iemocap(tmp_path, {"neu": 5, "ang": 5, "qqq": 1})
    with pytest.raises(ValueError, match=r"label_map has no entry for \['qqq'\]"):
        load_iemocap(root, check_counts=False)


def test_ravdess_speech_only_and_genders(tmp_path):
    dataset = load_corpus("ravdess", write_ravdess(tmp_path))
    assert len(dataset) == 4 * 8
    speakers = {row["speaker"]: dataset.features["gender"].names[row["gender"]] for row in dataset}
    assert speakers == {"Actor_01": "male", "Actor_02": "female", "Actor_03": "male", "Actor_04": "female"}
    mapped = load_corpus("ravdess", tmp_path, classes="iemocap4")
    assert class_counts(mapped) == {"neutral": 4, "happy": 4, "angry": 4, "sad": 4}


def test_cremad_demographics(tmp_path):
    dataset = load_corpus("cremad", write_cremad(tmp_path))
    assert len(dataset) == 12
    genders = {row["speaker"]: dataset.features["gender"].names[row["gender"]] for row in dataset}
    assert genders == {"1001": "male", "1002": "female"}
    assert class_counts(load_corpus("cremad", tmp_path, classes="iemocap4")) == dict.fromkeys(
        ("neutral", "happy", "angry", "sad"), 2
    )


def test_emodb_synthetic_names_and_label_map(tmp_path):
    root = write_emodb(tmp_path / "wav", ["03a01Wa.wav", "08a02Fb.wav", "16b10Lb.wav", "11a05Nc.wav"])
    dataset = load_corpus("emodb", tmp_path)  # finds the wav/ subfolder of the original archive
    assert len(dataset) == 4 and dataset.features["emotion"].names[0] == "anger"
    four = load_corpus("emodb", root, classes="iemocap4")
    assert sorted(four["id"]) == ["03a01Wa", "08a02Fb", "11a05Nc"]
    write_emodb(root, ["99a01Wa.wav"])
    with pytest.raises(ValueError, match=r"99a01Wa\.wav: not an EmoDB file name"):
        load_corpus("emodb", root)


def test_manifest_csv_and_jsonl(tmp_path):
    write_emodb(tmp_path / "clips", ["a.wav", "b.wav", "c.wav"])
    rows = [
        {"path": "clips/a.wav", "emotion": "happy", "gender": "F", "speaker": "s1"},
        {"path": "clips/b.wav", "emotion": "sad", "gender": "male", "speaker": "s2"},
        {"path": str(tmp_path / "clips" / "c.wav"), "emotion": "happy", "gender": "", "speaker": "s2"},
    ]
    with (tmp_path / "list.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "emotion", "gender", "speaker"])
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "list.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    for name in ("list.csv", "list.jsonl"):
        dataset = load_manifest(tmp_path / name)
        assert dataset["gender"] == [0, 1, -1]
        assert dataset.features["emotion"].names == ["happy", "sad"]
    rows[0]["gender"] = "x"
    (tmp_path / "bad.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    with pytest.raises(ValueError, match=r"bad.jsonl:1: gender 'x'"):
        load_manifest(tmp_path / "bad.jsonl")


def test_audiofolder(tmp_path):
    write_emodb(tmp_path / "angry", ["x1.wav", "x2.wav"])
    write_emodb(tmp_path / "neutral" / "sub", ["y1.wav"])
    dataset = load_audiofolder(tmp_path)
    assert Counter(dataset.features["emotion"].int2str(dataset["emotion"])) == {"angry": 2, "neutral": 1}


def test_a_folder_of_unlabelled_recordings(tmp_path):
    write_emodb(tmp_path / "day1", ["a.wav", "b.wav"])
    write_emodb(tmp_path / "day2" / "mic", ["a.wav"])
    (tmp_path / "notes.txt").write_text("not audio")
    dataset = load_corpus("files", tmp_path)
    assert sorted(dataset["id"]) == ["day1/a", "day1/b", "day2/mic/a"]  # unique though the names repeat
    assert set(dataset.features["emotion"].int2str(dataset["emotion"])) == {"unlabelled"}
    assert set(dataset["gender"]) == {-1}
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no audio files"):
        load_corpus("files", tmp_path / "empty")
    (tmp_path / "day1" / "c.wav").write_bytes(b"RIFF broken")
    with pytest.raises(AudioError, match=r"c\.wav"):
        load_corpus("files", tmp_path)
    assert len(load_corpus("files", tmp_path, on_error="skip")) == 3


def test_real_emodb(emodb_dir):
    dataset = load_corpus("emodb", emodb_dir)
    assert len(dataset) == 535
    assert len(set(dataset["speaker"])) == 10
    genders = {row["speaker"]: row["gender"] for row in dataset}
    assert Counter(genders.values()) == {0: 5, 1: 5}
    assert class_counts(dataset) == {
        "anger": 127, "boredom": 81, "disgust": 46, "fear": 69, "happiness": 71, "sadness": 62, "neutral": 79,
    }  # fmt: skip
    assert sum(dataset["duration"]) == pytest.approx(24 * 60 + 47, abs=1)
    names = dataset.features["gender"].names
    with (emodb_dir / "metadata.csv").open() as handle:
        metadata = {row["file"]: row for row in csv.DictReader(handle)}
    for row in dataset:
        meta = metadata[f"{row['id']}.wav"]
        assert (meta["speaker"], meta["gender"]) == (row["speaker"], names[row["gender"]])
        assert meta["emotion"] == dataset.features["emotion"].names[row["emotion"]]
        assert float(meta["duration_s"]) == pytest.approx(row["duration"], abs=1e-4)
    four = load_corpus("emodb", emodb_dir, classes="iemocap4")
    assert class_counts(four) == {"neutral": 79, "happy": 71, "angry": 127, "sad": 62}
