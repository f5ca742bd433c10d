"""What every corpus loader shares: the row schema, label maps, and bad-file handling."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import soundfile
from datasets import Audio, ClassLabel, Dataset, Features, Value

from ...models.audio_io import AudioError

logger = logging.getLogger(__name__)

GENDERS = ("female", "male")
IEMOCAP4 = ("neutral", "happy", "angry", "sad")
ON_ERROR = ("raise", "skip")

# label_map: original label -> target label, or None to drop the utterance.
LabelMap = Mapping[str, str | None]


@dataclass(frozen=True)
class Utterance:
    """One row of a corpus before it becomes a dataset."""

    id: str
    path: str
    emotion: str
    gender: str | None
    speaker: str
    session: str = ""


def map_labels(utterances: Iterable[Utterance], label_map: LabelMap | None, corpus: str) -> list[Utterance]:
    """Rename emotions with ``label_map`` and drop those it maps to None; unknown labels are an error."""
    utterances = list(utterances)
    if label_map is None:
        return utterances
    unknown = sorted({u.emotion for u in utterances} - set(label_map))
    if unknown:
        raise ValueError(f"{corpus}: label_map has no entry for {unknown}; map them to a class or to None to drop")
    return [
        Utterance(u.id, u.path, label_map[u.emotion], u.gender, u.speaker, u.session)
        for u in utterances
        if label_map[u.emotion] is not None
    ]


def parse_files(
    paths: Iterable[Path], parse: Callable[[Path], Utterance], on_error: str, corpus: str
) -> list[Utterance]:
    """Utterances from file names; a name that does not parse (a stray ``._*.wav`` of macOS, a copy
    named by hand) raises one error listing them all, or is logged and skipped with ``on_error="skip"``."""
    utterances, errors = [], []
    for path in paths:
        try:
            utterances.append(parse(path))
        except ValueError as error:
            errors.append(AudioError(str(path), str(error).removeprefix(f"{path}: ")))
    report_errors(errors, on_error, f"{corpus}: {len(errors)} file name(s) not understood")
    return utterances


def check_rows(utterances: list[Utterance], on_error: str, corpus: str) -> list[Utterance]:
    """The same file or id twice (kept once with ``on_error="skip"``, logged); a speaker with two genders
    (always an error: which one is right cannot be guessed)."""
    kept, errors, seen_paths, seen_ids = [], [], {}, {}
    for utterance in utterances:
        path = os.path.abspath(utterance.path)
        if path in seen_paths or utterance.id in seen_ids:
            first = seen_paths.get(path) or seen_ids.get(utterance.id)
            what = "file" if path in seen_paths else f"id {utterance.id!r}"
            errors.append(AudioError(utterance.path, f"the same {what} is listed twice (first as {first.path})"))
            continue
        seen_paths[path] = seen_ids[utterance.id] = utterance
        kept.append(utterance)
    report_errors(errors, on_error, f"{corpus}: duplicate rows")
    genders: dict[str, set[str]] = {}
    for utterance in kept:
        if utterance.gender:
            genders.setdefault(utterance.speaker, set()).add(utterance.gender)
    mixed = sorted(speaker for speaker, values in genders.items() if len(values) > 1)
    if mixed:
        raise ValueError(f"{corpus}: speaker(s) {mixed} appear with two genders; fix the gender of their rows")
    return kept


def check_files(utterances: list[Utterance], on_error: str, corpus: str) -> tuple[list[Utterance], list[float]]:
    """Read every file header; return the readable utterances and their durations (seconds).

    Missing or unreadable files raise one :class:`AudioError` listing all of them (``on_error="raise"``)
    or are logged one by one and dropped (``"skip"``).
    """
    utterances = check_rows(utterances, on_error, corpus)
    kept, durations, errors = [], [], []
    for utterance in utterances:
        path = Path(utterance.path)
        if not path.is_file():
            errors.append(AudioError(str(path), "file not found"))
            continue
        try:
            info = soundfile.info(str(path))
        except Exception as error:  # libsndfile raises several types; all mean "unreadable"
            errors.append(AudioError(str(path), f"unreadable or corrupt audio ({type(error).__name__})"))
            continue
        kept.append(utterance)
        durations.append(float(info.frames) / info.samplerate)
    report_errors(errors, on_error, f"{corpus}: {len(utterances)} files checked")
    return kept, durations


def report_errors(errors: list[AudioError], on_error: str, context: str) -> None:
    """Raise one error naming every bad file, or log each skipped file and the counts per reason."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if not errors:
        return
    if on_error == "raise":
        listed = "\n".join(f"  {error}" for error in errors[:50])
        more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
        raise AudioError(
            f"{len(errors)} file(s)", f"{context}; bad files (pass on_error='skip' to drop them):\n{listed}{more}"
        )
    for error in errors:
        logger.warning("skipping %s", error)
    reasons = Counter(error.reason.split(" (")[0] for error in errors)
    logger.warning("%s; skipped %d: %s", context, len(errors), dict(reasons))


def build_dataset(
    utterances: list[Utterance],
    durations: list[float],
    emotions: Iterable[str] | None = None,
    corpus: str = "",
) -> Dataset:
    """Rows -> ``datasets.Dataset`` with the shared schema.

    Columns: ``id``, ``audio`` (path-based ``Audio(decode=False)``; decoding is ours, not torchcodec's),
    ``emotion`` and ``gender`` (ClassLabel; gender -1 when unknown), ``speaker``, ``session``, ``duration``.
    ``emotions`` fixes the class order (label ids); by default it is the IEMOCAP 4-class order
    (neutral, happy, angry, sad) when the classes are among those, else alphabetical.
    """
    if not utterances:
        raise ValueError(f"{corpus}: no utterances left to build a dataset from")
    present = {u.emotion for u in utterances}
    if emotions is not None:
        names = list(emotions)
    elif present <= set(IEMOCAP4):
        names = [name for name in IEMOCAP4 if name in present]
    else:
        names = sorted(present)
    missing = sorted({u.emotion for u in utterances} - set(names))
    if missing:
        raise ValueError(f"{corpus}: emotions {missing} are not among the classes {names}")
    dataset = Dataset.from_dict(
        {
            "id": [u.id for u in utterances],
            "audio": [os.path.abspath(u.path) for u in utterances],
            "emotion": [names.index(u.emotion) for u in utterances],
            "gender": [GENDERS.index(u.gender) if u.gender else -1 for u in utterances],
            "speaker": [u.speaker for u in utterances],
            "session": [u.session for u in utterances],
            "duration": durations,
        }
    )
    features = Features(
        {
            "id": Value("string"),
            "audio": Audio(decode=False),
            "emotion": ClassLabel(names=names),
            "gender": ClassLabel(names=list(GENDERS)),
            "speaker": Value("string"),
            "session": Value("string"),
            "duration": Value("float32"),
        }
    )
    dataset = dataset.cast(features)
    dataset.info.description = corpus
    return dataset


def class_counts(dataset: Dataset, column: str = "emotion") -> dict[str, int]:
    names = dataset.features[column].names
    counts = Counter(dataset[column])
    return {names[i]: counts.get(i, 0) for i in range(len(names))}
