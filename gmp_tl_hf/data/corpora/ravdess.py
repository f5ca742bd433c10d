"""RAVDESS speech (Livingstone & Russo, 2018): ``Actor_XX/03-01-EE-II-SS-RR-AA.wav``.

Fields: modality (03 audio-only), vocal channel (01 speech, 02 song), emotion EE, intensity II,
statement SS, repetition RR, actor AA (odd = male, even = female).
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset

from ._common import LabelMap, Utterance, build_dataset, check_files, map_labels, parse_files

EMOTION_CODES = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
# Calm is dropped rather than merged into neutral; map it to "neutral" yourself if you prefer.
TO_IEMOCAP4: LabelMap = {
    "neutral": "neutral",
    "happy": "happy",
    "angry": "angry",
    "sad": "sad",
    **{label: None for label in ("calm", "fearful", "disgust", "surprised")},
}


def parse_name(path: Path) -> Utterance:
    """Utterance fields from a RAVDESS file name such as ``03-01-05-02-01-01-12.wav``."""
    fields = path.stem.split("-")
    if len(fields) != 7 or fields[2] not in EMOTION_CODES or not fields[6].isdigit():
        raise ValueError(f"{path}: not a RAVDESS file name (MM-VV-EE-II-SS-RR-AA.wav)")
    actor = int(fields[6])
    gender = "male" if actor % 2 else "female"
    return Utterance(path.stem, str(path), EMOTION_CODES[fields[2]], gender, f"Actor_{actor:02d}")


def load_ravdess(
    data_dir: str | Path, label_map: LabelMap | None = None, include_song: bool = False, on_error: str = "raise"
) -> Dataset:
    """RAVDESS speech (and, with ``include_song``, song) files under ``data_dir/Actor_XX/``."""
    files = sorted(Path(data_dir).glob("Actor_*/*.wav"))
    if not files:
        raise FileNotFoundError(f"no RAVDESS files in {data_dir}/Actor_*/")
    utterances = parse_files(files, parse_name, on_error, "RAVDESS")
    utterances = [u for u in utterances if include_song or u.id.split("-")[1] == "01"]
    utterances = map_labels(utterances, label_map, "RAVDESS")
    utterances, durations = check_files(utterances, on_error, "RAVDESS")
    return build_dataset(utterances, durations, corpus="RAVDESS")
