"""IEMOCAP (Busso et al., 2008) from the raw release folder ``IEMOCAP_full_release``.

Labels come from ``Session*/dialog/EmoEvaluation/*.txt`` (the categorical consensus label), audio
from ``Session*/sentences/wav/<dialog>/<utterance>.wav``. The standard 4-class setting merges
excited into happy and keeps 5531 utterances; the loader checks those counts.
"""

from __future__ import annotations

import re
from pathlib import Path

from datasets import Dataset

from ._common import LabelMap, Utterance, build_dataset, check_files, map_labels

# Categorical labels as written in EmoEvaluation: neu hap exc ang sad fru fea sur dis oth xxx.
RAW_LABELS = ("neu", "hap", "exc", "ang", "sad", "fru", "fea", "sur", "dis", "oth", "xxx")
STANDARD_4CLASS: LabelMap = {
    "neu": "neutral",
    "hap": "happy",
    "exc": "happy",
    "ang": "angry",
    "sad": "sad",
    **{label: None for label in ("fru", "fea", "sur", "dis", "oth", "xxx")},
}
STANDARD_COUNTS = {"neutral": 1708, "happy": 1636, "angry": 1103, "sad": 1084}  # 5531 in all

_LINE = re.compile(r"^\[[\d.]+ - [\d.]+\]\t(?P<id>Ses\d\d[FM]_\S+)\t(?P<label>\w+)\t")


def speaker_of(utterance_id: str) -> tuple[str, str]:
    """(speaker, gender) of an utterance id such as ``Ses01F_impro01_M013``.

    The speaker's gender is the first letter of the *last* token (M013: the male actor speaks). The
    letter after ``Ses01`` names the actor who leads the dialog, not the speaker: a classic bug.
    """
    session = utterance_id[:5]
    letter = utterance_id.rsplit("_", 1)[-1][0]
    if letter not in "FM":
        raise ValueError(f"cannot read the speaker of IEMOCAP utterance {utterance_id!r}")
    return f"{session}{letter}", "male" if letter == "M" else "female"


def read_labels(root: Path, sessions: tuple[int, ...]) -> list[tuple[str, str, int]]:
    """(utterance id, raw categorical label, session) for every evaluated utterance."""
    rows = []
    for session in sessions:
        folder = root / f"Session{session}" / "dialog" / "EmoEvaluation"
        files = sorted(p for p in folder.glob("*.txt") if not p.name.startswith("."))
        if not files:
            raise FileNotFoundError(f"no EmoEvaluation files in {folder}; is {root} the IEMOCAP_full_release folder?")
        for file in files:
            for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
                match = _LINE.match(line)
                if match:
                    rows.append((match["id"], match["label"], session))
    return rows


def load_iemocap(
    data_dir: str | Path,
    label_map: LabelMap | None = STANDARD_4CLASS,
    sessions: tuple[int, ...] = (1, 2, 3, 4, 5),
    improvised_only: bool = False,
    on_error: str = "raise",
    check_counts: bool | None = None,
) -> Dataset:
    """IEMOCAP utterances as a dataset (see :func:`build_dataset` for the columns).

    Args:
        data_dir: the ``IEMOCAP_full_release`` folder (holding ``Session1`` ... ``Session5``).
        label_map: raw label -> class (None drops); default: the standard 4 classes, excited -> happy.
            ``None`` keeps the raw labels.
        sessions: sessions to read. ``session`` column: "Ses01" ... "Ses05" (the LOSO folds).
        improvised_only: keep the improvised dialogs only (some papers do).
        on_error: "raise" on missing/unreadable wav files (listing all of them) or "skip" them.
        check_counts: compare the class counts with the standard 5531 (default: whenever the
            standard map, all sessions and all dialogs are used). A mismatch means an incomplete
            release or a changed label file and raises.
    """
    root = Path(data_dir)
    rows = read_labels(root, tuple(sessions))
    utterances = []
    for utterance_id, label, session in rows:
        if improvised_only and "_impro" not in utterance_id:
            continue
        speaker, gender = speaker_of(utterance_id)
        dialog = utterance_id.rsplit("_", 1)[0]
        path = root / f"Session{session}" / "sentences" / "wav" / dialog / f"{utterance_id}.wav"
        utterances.append(Utterance(utterance_id, str(path), label, gender, speaker, f"Ses0{session}"))
    utterances = map_labels(utterances, label_map, "IEMOCAP")
    if check_counts is None:
        check_counts = label_map is STANDARD_4CLASS and tuple(sessions) == (1, 2, 3, 4, 5) and not improvised_only
    if check_counts:
        counts = {name: sum(u.emotion == name for u in utterances) for name in STANDARD_COUNTS}
        if counts != STANDARD_COUNTS:
            raise ValueError(
                f"IEMOCAP 4-class counts {counts} (total {sum(counts.values())}) differ from the standard "
                f"{STANDARD_COUNTS} (5531): is {root} a complete IEMOCAP_full_release?"
            )
    utterances, durations = check_files(utterances, on_error, "IEMOCAP")
    return build_dataset(utterances, durations, corpus="IEMOCAP")
