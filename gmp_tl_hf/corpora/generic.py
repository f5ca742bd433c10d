"""Any corpus: a CSV/JSONL manifest, or an ``audiofolder``-style tree (``<emotion>/<file>``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from datasets import Dataset

from ._common import LabelMap, Utterance, build_dataset, check_files, map_labels

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
_GENDER_SPELLINGS = {"female": "female", "f": "female", "woman": "female", "male": "male", "m": "male", "man": "male"}


def normalise_gender(value: str | None, where: str) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    gender = _GENDER_SPELLINGS.get(str(value).strip().lower())
    if gender is None:
        raise ValueError(f"{where}: gender {value!r} is not one of female/male (or f/m)")
    return gender


def read_manifest(path: Path) -> list[dict]:
    """Rows of a ``.csv`` (header row) or ``.jsonl`` (one object per line) manifest."""
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def load_manifest(
    manifest: str | Path, label_map: LabelMap | None = None, emotions=None, on_error: str = "raise"
) -> Dataset:
    """A corpus listed in a manifest with columns ``path`` and ``emotion`` and optionally ``gender``,
    ``speaker``, ``session`` and ``id``. Relative paths are relative to the manifest's folder.
    Without ``speaker`` every file counts as its own speaker (no speaker-independent splits then).
    """
    manifest = Path(manifest)
    rows = read_manifest(manifest)
    if not rows:
        raise ValueError(f"{manifest} lists no files")
    missing = {"path", "emotion"} - set(rows[0])
    if missing:
        raise ValueError(f"{manifest} needs the columns path and emotion; missing {sorted(missing)}")
    utterances = []
    for number, row in enumerate(rows, start=1):
        where = f"{manifest}:{number}"
        path = Path(row["path"])
        path = path if path.is_absolute() else manifest.parent / path
        if not str(row["emotion"]).strip():
            raise ValueError(f"{where}: empty emotion for {path}")
        utterances.append(
            Utterance(
                id=str(row.get("id") or path.stem),
                path=str(path),
                emotion=str(row["emotion"]).strip(),
                gender=normalise_gender(row.get("gender"), where),
                speaker=str(row.get("speaker") or path.stem),
                session=str(row.get("session") or ""),
            )
        )
    utterances = map_labels(utterances, label_map, manifest.name)
    utterances, durations = check_files(utterances, on_error, manifest.name)
    return build_dataset(utterances, durations, emotions, manifest.name)


def load_audiofolder(data_dir: str | Path, label_map: LabelMap | None = None, on_error: str = "raise") -> Dataset:
    """Files under ``data_dir/<emotion>/`` (any depth below it); no speaker or gender information."""
    root = Path(data_dir)
    utterances = [
        Utterance(path.stem, str(path), path.relative_to(root).parts[0], None, path.stem)
        for path in sorted(root.rglob("*"))
        if path.suffix.lower() in AUDIO_SUFFIXES and len(path.relative_to(root).parts) >= 2
    ]
    if not utterances:
        raise FileNotFoundError(f"no audio files under {root}/<emotion>/")
    utterances = map_labels(utterances, label_map, root.name)
    utterances, durations = check_files(utterances, on_error, root.name)
    return build_dataset(utterances, durations, corpus=root.name)
