"""``gmp-tl predict``: label recordings (files, folders, manifests) with a model, one row per file.

Rows are written as they are made (CSV or JSON lines, by the output's suffix), so an interrupted run
keeps what it did and ``--resume`` skips the files already in the output. A file that cannot be read
gets a row with its error and the others are still labelled; the exit code is 1 when any file failed.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import soundfile
import torch
from tqdm.auto import tqdm
from transformers import pipeline

from .arguments import ConfigError
from .data.corpora.generic import read_manifest
from .models.audio_io import AudioError, decode_input
from .models.onnx_pipeline import EXPORT_FILE, OnnxSpeechEmotionPipeline
from .plotting import plot_timeline

logger = logging.getLogger(__name__)

MANIFEST_SUFFIXES = {".csv", ".tsv", ".txt", ".jsonl"}
# In a folder, a file with one of these names is taken as meant to be audio: unreadable, it gets an error
# row. Any other file is taken when its content is audio, and skipped (with a count) when not.
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf", ".m4a",
                  ".aac", ".wma"}  # fmt: skip
COLUMNS = ["path", "duration_s", "emotion", "emotion_score", "emotion_scores", "gender", "gender_score", "timeline",
           "error"]  # fmt: skip


def is_audio(path: Path) -> bool:
    """Audio by content (the header soundfile reads), whatever the file is called."""
    try:
        soundfile.info(str(path))
    except Exception:  # libsndfile raises several types; any means "not audio it can read"
        return False
    return True


def collect_files(paths: list[str]) -> Iterator[tuple[str, str | None]]:
    """``(file, reason it cannot be used or None)`` for every input: files as given, folders searched
    recursively (audio by name or by content; other files skipped), manifests (a ``path`` column,
    relative to the manifest)."""
    for given in paths:
        path = Path(given)
        if path.is_dir():
            skipped = 0
            for candidate in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("._")):
                if candidate.suffix.lower() in AUDIO_SUFFIXES or is_audio(candidate):
                    yield str(candidate), None
                else:
                    skipped += 1
            if skipped:
                logger.info("%s: skipped %d files that are not audio", path, skipped)
        elif path.suffix.lower() in MANIFEST_SUFFIXES and path.is_file() and not is_audio(path):
            for number, row in read_manifest(path):
                value = str(row.get("path") or "").strip()
                if not value:
                    yield f"{path}:{number}", "manifest row without a path"
                    continue
                yield str(Path(value) if Path(value).is_absolute() else path.parent / value), None
        else:
            yield str(path), None


def load_classifier(model: str, threads: int | None):
    """The torch pipeline for a checkpoint folder or Hub id, or the onnxruntime one for an ONNX export."""
    if (Path(model) / EXPORT_FILE).is_file():
        return OnnxSpeechEmotionPipeline(model, threads=threads)
    device = 0 if torch.cuda.is_available() else "cpu"  # the first GPU when there is one
    return pipeline("audio-classification", model=model, trust_remote_code=True, device=device)


def answer_row(path: str, seconds: float, answer: dict, timeline: bool) -> dict[str, Any]:
    ranking = answer["emotion"]
    row = {
        "path": path,
        "duration_s": round(seconds, 3),
        "emotion": ranking[0]["label"],
        "emotion_score": round(ranking[0]["score"], 4),
        "emotion_scores": json.dumps({entry["label"]: round(entry["score"], 4) for entry in ranking}),
        "gender": answer["gender"][0]["label"] if "gender" in answer else "",
        "gender_score": round(answer["gender"][0]["score"], 4) if "gender" in answer else "",
        "timeline": json.dumps(answer["timeline"]) if timeline else "",
        "error": "",
    }
    return row


class RowWriter:
    """Appends rows to a CSV or JSON-lines file, flushed after each batch."""

    def __init__(self, path: Path, append: bool):
        self.jsonl = path.suffix.lower() == ".jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not (append and path.is_file() and path.stat().st_size > 0)
        self.handle = path.open("a" if append else "w", newline="", encoding="utf-8")
        self.writer = None if self.jsonl else csv.DictWriter(self.handle, fieldnames=COLUMNS)
        if self.writer is not None and new:
            self.writer.writeheader()

    def write(self, rows: list[dict]) -> None:
        for row in rows:
            if self.jsonl:
                self.handle.write(json.dumps(row) + "\n")
            else:
                self.writer.writerow(row)
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def finished_paths(path: Path) -> set[str]:
    """Files that already have a row in an earlier run's output (``--resume``)."""
    if not path.is_file():
        return set()
    if path.suffix.lower() == ".jsonl":
        return {json.loads(line)["path"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["path"] for row in csv.DictReader(handle)}


def predict(
    model: str,
    paths: list[str],
    output: Path,
    timeline: bool = False,
    window: float = 0.5,
    batch_size: int = 1,
    plot_dir: Path | None = None,
    resume: bool = False,
    threads: int | None = None,
    gender: bool = True,
) -> dict[str, int]:
    """Label every file; returns counts of labelled, failed and skipped (already done) files."""
    if threads:
        torch.set_num_threads(threads)
    classifier = load_classifier(model, threads)
    sampling_rate = sampling_rate_of(classifier)
    gender = gender and gender_head_trained(classifier)
    done = finished_paths(output) if resume else set()
    files = [(file, reason) for file, reason in collect_files(paths) if file not in done]
    writer = RowWriter(output, append=resume)
    counts = {"labelled": 0, "failed": 0, "skipped": len(done)}
    options = {"return_gender": gender, "return_timeline": timeline or plot_dir is not None}
    if options["return_timeline"]:
        options["timeline_window"] = window
    try:
        with tqdm(total=len(files), desc="labelling", unit="file") as progress:
            for start in range(0, len(files), batch_size):
                batch = files[start : start + batch_size]
                rows = _label_batch(classifier, batch, sampling_rate, options, timeline, plot_dir)
                counts["failed"] += sum(bool(row["error"]) for row in rows)
                counts["labelled"] += sum(not row["error"] for row in rows)
                writer.write(rows)
                progress.update(len(batch))
    finally:
        writer.close()
    return counts


def gender_head_trained(classifier) -> bool:
    """Whether the model has a gender answer to give (either pipeline)."""
    if isinstance(classifier, OnnxSpeechEmotionPipeline):
        return classifier.gender_head_trained
    return bool(getattr(classifier.model.config, "gender_head_trained", False))


def sampling_rate_of(classifier) -> int:
    if isinstance(classifier, OnnxSpeechEmotionPipeline):
        return classifier.sampling_rate
    return classifier.feature_extractor.sampling_rate


def _label_batch(classifier, batch, sampling_rate: int, options: dict, timeline: bool, plot_dir: Path | None):
    """Decode each file (a bad one becomes an error row), classify the rest together, plot if asked."""
    rows: dict[int, dict] = {}
    waves = {}
    for index, (file, reason) in enumerate(batch):
        if reason is None:
            try:
                waves[index] = decode_input(file, None, sampling_rate)
            except AudioError as error:
                reason = error.reason
        if reason is not None:
            rows[index] = {**dict.fromkeys(COLUMNS, ""), "path": file, "error": reason}
    if waves:
        order = list(waves)
        extra = {"batch_size": len(order)} if not isinstance(classifier, OnnxSpeechEmotionPipeline) else {}
        answers = classifier([waves[i] for i in order], **options, **extra)
        for index, answer in zip(order, answers):
            if not isinstance(answer, dict) or "emotion" not in answer:
                answer = {"emotion": answer}
            file = batch[index][0]
            rows[index] = answer_row(file, len(waves[index]) / sampling_rate, answer, timeline)
            if plot_dir is not None:
                plot_timeline(answer, plot_dir / f"{Path(file).stem}.png", waveform=waves[index],
                              sampling_rate=sampling_rate, title=Path(file).name)  # fmt: skip
    return [rows[index] for index in range(len(batch))]


def main(argv: list[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(prog="gmp-tl predict", description=__doc__)
    parser.add_argument("model", help="a checkpoint folder, a Hub id, or a folder made by `gmp-tl export-onnx`")
    parser.add_argument("paths", nargs="+", help="audio files, folders (searched recursively), or manifests")
    parser.add_argument("--output", type=Path, default=Path("predictions.csv"), help=".csv or .jsonl")
    parser.add_argument("--timeline", action="store_true", help="add each file's timeline (JSON) to its row")
    parser.add_argument("--window", type=float, default=0.5, help="timeline window in seconds")
    parser.add_argument(
        "--batch_size", type=int, default=1, help="clips per forward pass: 1 is fastest on CPU (padding), more on a GPU"
    )
    parser.add_argument("--plot", type=Path, default=None, metavar="DIR", help="one timeline PNG per file")
    parser.add_argument("--resume", action="store_true", help="skip files the output already has")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--no_gender", action="store_true", help="leave the gender columns empty")
    args = parser.parse_args(argv)
    if args.output.suffix.lower() not in (".csv", ".jsonl"):
        raise ConfigError(f"--output must end in .csv or .jsonl, got {args.output}")
    if args.output.exists() and not (args.resume or args.overwrite):
        raise ConfigError(f"{args.output} exists: --resume to continue it, --overwrite to replace it")
    if args.batch_size < 1 or args.window <= 0:
        raise ConfigError("--batch_size must be >= 1 and --window > 0")
    counts = predict(
        args.model, args.paths, args.output, args.timeline, args.window, args.batch_size, args.plot,
        args.resume, args.threads, not args.no_gender,
    )  # fmt: skip
    print(
        f"{counts['labelled']} labelled, {counts['failed']} failed, {counts['skipped']} done earlier "
        f"-> {args.output}" + (f" (plots in {args.plot})" if args.plot else "")
    )
    if counts["failed"]:
        raise SystemExit(1)
    return counts


__all__ = ["collect_files", "gender_head_trained", "load_classifier", "main", "predict", "sampling_rate_of"]
