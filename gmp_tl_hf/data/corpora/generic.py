"""Any corpus: a CSV/JSONL manifest, an ``audiofolder``-style tree (``<emotion>/<file>``), or a folder of
unlabelled recordings (``files``: for pre-training)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from datasets import Dataset

from ...models.audio_io import AudioError
from ._common import LabelMap, Utterance, build_dataset, check_files, map_labels, report_errors

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
_GENDER_SPELLINGS = {"female": "female", "f": "female", "woman": "female", "male": "male", "m": "male", "man": "male"}


def normalise_gender(value: str | None) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    gender = _GENDER_SPELLINGS.get(str(value).strip().lower())
    if gender is None:
        raise ValueError(f"gender {value!r} is not one of female/male (f/m), or empty for unknown")
    return gender


DELIMITERS = ",;\t|"


def read_manifest(path: Path, delimiter: str | None = None) -> list[tuple[int, dict]]:
    """``(line number, row)`` pairs of a ``.jsonl`` manifest (one object per line) or a delimited text
    manifest with a header row. Text manifests may start with a byte-order mark (Excel's "CSV UTF-8")
    and use ``,``, ``;``, tab or ``|`` (sniffed from the header unless ``delimiter`` is given) and any
    line ending."""
    if path.suffix == ".jsonl":
        rows = []
        with path.open(encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        rows.append((number, json.loads(line)))
                    except json.JSONDecodeError as error:
                        raise ValueError(f"{path}:{number}: not a JSON object ({error.msg})") from None
        return rows
    with path.open(newline="", encoding="utf-8-sig") as handle:
        text = handle.read()
    if delimiter is None:
        header = text.splitlines()[0] if text else ""
        counts = {candidate: header.count(candidate) for candidate in DELIMITERS}
        delimiter = max(counts, key=counts.get) if max(counts.values()) else ","
    reader = csv.DictReader(text.splitlines(keepends=True), delimiter=delimiter)
    rows = []
    for row in reader:
        rows.append((reader.line_num, row))
    return rows


def load_manifest(
    manifest: str | Path,
    label_map: LabelMap | None = None,
    emotions=None,
    on_error: str = "raise",
    delimiter: str | None = None,
) -> Dataset:
    """A corpus listed in a manifest with columns ``path`` and ``emotion`` and optionally ``gender``
    (female/male, f/m, or empty for unknown), ``speaker``, ``session`` and ``id``.

    Relative paths are relative to the manifest's folder. Without ``speaker`` every file counts as its
    own speaker (no speaker-independent splits then). A row without a path or an emotion, or with a
    gender outside the allowed set, is an error naming ``file:line`` (all of them at once), or with
    ``on_error="skip"`` a logged skip; see :func:`read_manifest` for the formats.
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest {manifest} not found")
    rows = read_manifest(manifest, delimiter)
    if not rows:
        raise ValueError(f"{manifest} lists no files")
    missing = {"path", "emotion"} - set(rows[0][1])
    if missing:
        raise ValueError(
            f"{manifest} needs the columns path and emotion; missing {sorted(missing)} "
            f"(header: {sorted(rows[0][1])}; pass delimiter= if the columns were not split)"
        )
    utterances, errors = [], []
    for number, row in rows:
        where = f"{manifest}:{number}"
        try:
            utterances.append(_manifest_row(row, manifest.parent))
        except ValueError as error:
            errors.append(AudioError(where, str(error)))
    report_errors(errors, on_error, f"{manifest.name}: {len(errors)} bad row(s)")
    utterances = map_labels(utterances, label_map, manifest.name)
    utterances, durations = check_files(utterances, on_error, manifest.name)
    return build_dataset(utterances, durations, emotions, manifest.name)


def _manifest_row(row: dict, folder: Path) -> Utterance:
    empty = [key for key in ("path", "emotion") if row.get(key) is None or not str(row[key]).strip()]
    if empty:
        raise ValueError(f"no {' and no '.join(empty)} (the row stops short or the field is empty)")
    path = Path(str(row["path"]).strip())
    path = path if path.is_absolute() else folder / path
    return Utterance(
        id=str(row.get("id") or path.stem),
        path=str(path),
        emotion=str(row["emotion"]).strip(),
        gender=normalise_gender(row.get("gender")),
        speaker=str(row.get("speaker") or path.stem),
        session=str(row.get("session") or ""),
    )


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


UNLABELLED = "unlabelled"


def load_files(data_dir: str | Path, label_map: LabelMap | None = None, on_error: str = "raise") -> Dataset:
    """Every audio file under ``data_dir`` (any depth), unlabelled: emotion ``"unlabelled"``, gender
    unknown, each file its own speaker. What pre-training reads from a user's own recordings."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    utterances = [
        Utterance(str(path.relative_to(root).with_suffix("")), str(path), UNLABELLED, None, path.stem)
        for path in sorted(root.rglob("*"))
        if path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith("._")
    ]
    if not utterances:
        raise FileNotFoundError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under {root}")
    utterances, durations = check_files(utterances, on_error, root.name)
    return build_dataset(utterances, durations, corpus=root.name)
