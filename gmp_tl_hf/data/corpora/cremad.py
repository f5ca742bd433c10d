"""CREMA-D (Cao et al., 2014): ``AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav`` + ``VideoDemographics.csv``."""

from __future__ import annotations

import csv
from pathlib import Path

from datasets import Dataset

from ._common import LabelMap, Utterance, build_dataset, check_files, map_labels

EMOTION_CODES = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
TO_IEMOCAP4: LabelMap = {
    "neutral": "neutral",
    "happy": "happy",
    "anger": "angry",
    "sad": "sad",
    "disgust": None,
    "fear": None,
}


def read_demographics(path: Path) -> dict[str, str]:
    """Actor id -> "female"/"male" from ``VideoDemographics.csv``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: CREMA-D genders come from VideoDemographics.csv")
    genders = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            sex = row["Sex"].strip().lower()
            if sex not in ("female", "male"):
                raise ValueError(f"{path}: actor {row['ActorID']} has Sex={row['Sex']!r}")
            genders[row["ActorID"].strip()] = sex
    return genders


def load_cremad(data_dir: str | Path, label_map: LabelMap | None = None, on_error: str = "raise") -> Dataset:
    """CREMA-D audio under ``data_dir/AudioWAV`` with genders from ``data_dir/VideoDemographics.csv``."""
    root = Path(data_dir)
    genders = read_demographics(root / "VideoDemographics.csv")
    files = sorted((root / "AudioWAV").glob("*.wav"))
    if not files:
        raise FileNotFoundError(f"no CREMA-D files in {root / 'AudioWAV'}")
    utterances = []
    for path in files:
        fields = path.stem.split("_")
        if len(fields) != 4 or fields[2] not in EMOTION_CODES:
            raise ValueError(f"{path}: not a CREMA-D file name (actor_sentence_emotion_level.wav)")
        if fields[0] not in genders:
            raise ValueError(f"{path}: actor {fields[0]} is missing from VideoDemographics.csv")
        utterances.append(Utterance(path.stem, str(path), EMOTION_CODES[fields[2]], genders[fields[0]], fields[0]))
    utterances = map_labels(utterances, label_map, "CREMA-D")
    utterances, durations = check_files(utterances, on_error, "CREMA-D")
    return build_dataset(utterances, durations, corpus="CREMA-D")
