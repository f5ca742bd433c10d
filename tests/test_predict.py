"""`gmp-tl predict`: a folder, a manifest and bad files in, one row per file out; resume; plots."""

from __future__ import annotations

import csv
import json

import pytest
import soundfile
from conftest import speechlike, tiny_model

from gmp_tl_hf import default_feature_extractor
from gmp_tl_hf.cli import main as cli
from gmp_tl_hf.plotting import plot_timeline
from gmp_tl_hf.predict import main as predict


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoint")
    tiny_model(seed=3, gender_head_trained=True).save_pretrained(path)
    default_feature_extractor().save_pretrained(path)
    return path


@pytest.fixture
def recordings(tmp_path):
    """A folder with good clips (one named .dat), a text file, a corrupt .wav, and a manifest that
    names one good clip and one missing file."""
    folder = tmp_path / "recordings"
    (folder / "sub").mkdir(parents=True)
    soundfile.write(folder / "a.wav", speechlike(1.5, seed=1), 16000)
    soundfile.write(folder / "b.flac", speechlike(2.2, sampling_rate=22050, seed=2), 22050)
    soundfile.write(folder / "sub" / "c.dat", speechlike(1.0, seed=3), 16000, format="WAV")
    (folder / "notes.txt").write_text("not audio\n")
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    manifest = tmp_path / "list.csv"
    soundfile.write(tmp_path / "d.wav", speechlike(1.2, seed=4), 16000)
    manifest.write_text("path,emotion\nd.wav,neutral\nmissing.wav,sad\n")
    return folder, manifest


def read_rows(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_labels_every_file_and_names_the_bad_ones(checkpoint, recordings, tmp_path):
    folder, manifest = recordings
    output, plots = tmp_path / "out.csv", tmp_path / "plots"
    with pytest.raises(SystemExit) as stopped:  # some files failed: exit code 1, the rest labelled
        cli(["predict", str(checkpoint), str(folder), str(manifest), "--output", str(output), "--timeline",
             "--window", "0.5", "--batch_size", "2", "--plot", str(plots)])  # fmt: skip
    assert stopped.value.code == 1
    rows = {row["path"].split("/")[-1]: row for row in read_rows(output)}
    assert set(rows) == {"a.wav", "b.flac", "c.dat", "broken.wav", "d.wav", "missing.wav"}  # notes.txt skipped
    assert "corrupt" in rows["broken.wav"]["error"] and "not found" in rows["missing.wav"]["error"]
    for name in ("a.wav", "b.flac", "c.dat", "d.wav"):
        row = rows[name]
        assert row["error"] == "" and row["emotion"] in {"neutral", "happy", "angry", "sad"}
        assert row["gender"] in {"female", "male"}
        scores = json.loads(row["emotion_scores"])
        assert scores[row["emotion"]] == pytest.approx(float(row["emotion_score"]), abs=1e-4)
        timeline = json.loads(row["timeline"])
        assert timeline[-1]["end"] == pytest.approx(float(row["duration_s"]), abs=0.03)
        assert (plots / f"{name.rsplit('.', 1)[0]}.png").stat().st_size > 10_000
    assert float(rows["b.flac"]["duration_s"]) == pytest.approx(2.2, abs=0.01)  # resampled, same duration


def test_predict_resumes_and_refuses_to_overwrite(checkpoint, recordings, tmp_path):
    folder, _ = recordings
    (folder / "broken.wav").unlink()
    output = tmp_path / "out.jsonl"
    first = predict([str(checkpoint), str(folder), "--output", str(output)])
    lines = output.read_text().splitlines()
    assert first == {"labelled": 3, "failed": 0, "skipped": 0} and len(lines) == 3
    output.write_text("\n".join(lines[:1]) + "\n")  # as if interrupted after the first file
    resumed = predict([str(checkpoint), str(folder), "--output", str(output), "--resume"])
    assert resumed == {"labelled": 2, "failed": 0, "skipped": 1}
    assert sorted(output.read_text().splitlines()) == sorted(lines)  # the same rows, each once
    with pytest.raises(SystemExit) as stopped:
        cli(["predict", str(checkpoint), str(folder), "--output", str(output)])
    assert stopped.value.code == 2  # exists: one line, nothing written


def test_plot_timeline_needs_a_timeline(tmp_path):
    answer = {
        "emotion": [{"label": "sad", "score": 0.7}, {"label": "happy", "score": 0.3}],
        "timeline": [
            {"start": 0.0, "end": 0.5, "label": "sad", "score": 0.6, "scores": {"sad": 0.6, "happy": 0.4}},
            {"start": 0.5, "end": 0.8, "label": "happy", "score": 0.9, "scores": {"sad": 0.1, "happy": 0.9}},
        ],
    }
    assert plot_timeline(answer, tmp_path / "t.png", waveform=speechlike(0.8)).stat().st_size > 5_000
    with pytest.raises(ValueError, match="return_timeline=True"):
        plot_timeline({"emotion": answer["emotion"]}, tmp_path / "u.png")
