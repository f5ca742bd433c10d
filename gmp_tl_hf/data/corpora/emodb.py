"""EmoDB, the Berlin Database of Emotional Speech (Burkhardt et al., 2005), original release.

File names ``SSTTTEV.wav`` give speaker ``SS``, text ``TTT``, emotion letter ``E`` and version ``V``;
genders come from the official speaker list. No official folds: use speaker-independent splits.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset

from ._common import LabelMap, Utterance, build_dataset, check_files, map_labels, parse_files

EMOTION_LETTERS = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
SPEAKER_GENDERS = {
    "03": "male", "10": "male", "11": "male", "12": "male", "15": "male",
    "08": "female", "09": "female", "13": "female", "14": "female", "16": "female",
}  # fmt: skip
TO_IEMOCAP4: LabelMap = {
    "neutral": "neutral",
    "happiness": "happy",
    "anger": "angry",
    "sadness": "sad",
    "boredom": None,
    "disgust": None,
    "fear": None,
}
EMOTIONS = ("anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral")


def parse_name(path: Path) -> Utterance:
    """Utterance fields from an EmoDB file name such as ``03a01Wa.wav``."""
    stem = path.stem
    speaker, letter = stem[:2], stem[5:6]
    if len(stem) != 7 or speaker not in SPEAKER_GENDERS or letter not in EMOTION_LETTERS:
        raise ValueError(f"{path}: not an EmoDB file name (SSTTTEV.wav with a known speaker and emotion letter)")
    return Utterance(stem, str(path), EMOTION_LETTERS[letter], SPEAKER_GENDERS[speaker], speaker)


def load_emodb(data_dir: str | Path, label_map: LabelMap | None = None, on_error: str = "raise") -> Dataset:
    """EmoDB as a dataset: 535 utterances, 10 speakers, 7 emotions (``label_map=TO_IEMOCAP4`` for 4).

    ``data_dir`` holds the wav files directly or in a ``wav/`` subfolder (the original archive).
    """
    root = Path(data_dir)
    folder = root / "wav" if (root / "wav").is_dir() else root
    files = sorted(folder.glob("*.wav"))
    if not files:
        raise FileNotFoundError(f"no EmoDB wav files in {folder}")
    utterances = map_labels(parse_files(files, parse_name, on_error, "EmoDB"), label_map, "EmoDB")
    utterances, durations = check_files(utterances, on_error, "EmoDB")
    return build_dataset(utterances, durations, EMOTIONS if label_map is None else None, "EmoDB")
