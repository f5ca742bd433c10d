"""Small folder trees that mimic each corpus's release layout, written with soundfile."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile

# IEMOCAP raw categorical counts that give the standard 4-class set (exc + hap = 1636 happy).
IEMOCAP_RAW_COUNTS = {"neu": 1708, "hap": 595, "exc": 1041, "ang": 1103, "sad": 1084, "fru": 40, "xxx": 30, "sur": 5}


def wav_bytes(seconds: float = 0.05, sampling_rate: int = 16000, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    wave = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * sampling_rate))
    soundfile.write(buffer, wave.astype(np.float32), sampling_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def write_iemocap(root: Path, raw_counts: dict[str, int] = IEMOCAP_RAW_COUNTS) -> Path:
    """An IEMOCAP_full_release tree: 5 sessions, improvised and scripted dialogs, EmoEvaluation files.

    Utterances alternate speakers inside every dialog, so a dialog led by the female actor (``Ses01F``)
    also holds male utterances (``..._M003``): the gender must come from the last token.
    """
    release = root / "IEMOCAP_full_release"
    audio = wav_bytes()
    labels = [label for label, count in raw_counts.items() for _ in range(count)]
    np.random.default_rng(0).shuffle(labels)
    per_dialog = 40
    dialogs: dict[tuple[int, str], list[str]] = {}
    for index, label in enumerate(labels):
        session = index % 5 + 1
        number = index // (5 * per_dialog)
        lead = "F" if number % 2 == 0 else "M"
        kind = f"impro{number:02d}" if number % 3 else f"script{number:02d}_1"
        dialogs.setdefault((session, f"Ses0{session}{lead}_{kind}"), []).append(label)
    for (session, dialog), dialog_labels in dialogs.items():
        evaluation = release / f"Session{session}" / "dialog" / "EmoEvaluation"
        wav_dir = release / f"Session{session}" / "sentences" / "wav" / dialog
        wav_dir.mkdir(parents=True, exist_ok=True)
        evaluation.mkdir(parents=True, exist_ok=True)
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        for turn, label in enumerate(dialog_labels):
            utterance = f"{dialog}_{'FM'[turn % 2]}{turn:03d}"
            lines += [
                f"[{turn * 3.0:.4f} - {turn * 3.0 + 2.5:.4f}]\t{utterance}\t{label}\t[2.5000, 3.0000, 2.5000]",
                "C-E1:\tNeutral;\t()",
                "A-E2:\tval 3; act 3; dom  3;\t()",
                "",
            ]
            (wav_dir / f"{utterance}.wav").write_bytes(audio)
        (evaluation / f"{dialog}.txt").write_text("\n".join(lines))
        (evaluation / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    (release / "Session1" / "dialog" / "EmoEvaluation" / "Categorical").mkdir()
    return release


def write_ravdess(root: Path) -> Path:
    audio = wav_bytes(0.1, 48000)
    for actor in (1, 2, 3, 4):
        folder = root / f"Actor_{actor:02d}"
        folder.mkdir(parents=True)
        for emotion in range(1, 9):
            for channel in (1, 2):
                if channel == 2 and emotion in (7, 8):
                    continue  # no song for disgust/surprised, as in the release
                (folder / f"03-{channel:02d}-{emotion:02d}-01-01-01-{actor:02d}.wav").write_bytes(audio)
    return root


def write_cremad(root: Path) -> Path:
    audio = wav_bytes(0.1)
    (root / "AudioWAV").mkdir(parents=True)
    rows = [
        "ActorID,Age,Sex,Race,Ethnicity",
        "1001,51,Male,Caucasian,Not Hispanic",
        "1002,21,Female,Caucasian,Not Hispanic",
    ]
    (root / "VideoDemographics.csv").write_text("\n".join(rows) + "\n")
    for actor in ("1001", "1002"):
        for emotion in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD"):
            (root / "AudioWAV" / f"{actor}_IEO_{emotion}_HI.wav").write_bytes(audio)
    return root


def write_emodb(root: Path, names: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    audio = wav_bytes(0.1)
    for name in names:
        (root / name).write_bytes(audio)
    return root
