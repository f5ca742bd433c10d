"""A small emotional-speech corpus synthesised on the spot, for the offline demo and tests.

Each clip is a voiced, vowel-like signal: a harmonic source following an F0 contour, shaped by
formant resonators and a syllable envelope. Emotions change F0 level and range, tempo, energy,
jitter, breathiness and spectral tilt (roughly as described in the prosody literature); speakers
differ in F0 (male ~115 Hz, female ~210 Hz), formant scale and voice colour. Every clip also gets
random variation, so the task is learnable but not trivial. Deterministic for a given seed.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import soundfile
from scipy.signal import lfilter
from tqdm.auto import tqdm

SAMPLING_RATE = 16000


@dataclass(frozen=True)
class EmotionStyle:
    f0_scale: float  # relative to the speaker's F0
    f0_range: float  # depth of the F0 contour
    syllables_per_second: float
    energy: float
    jitter: float  # cycle-to-cycle F0 noise
    breathiness: float  # aspiration noise level
    tilt: float  # harmonic roll-off exponent (lower = brighter, tenser voice)


EMOTION_STYLES = {
    "neutral": EmotionStyle(1.00, 0.08, 4.0, 0.45, 0.004, 0.03, 1.6),
    "happy": EmotionStyle(1.22, 0.28, 5.0, 0.65, 0.008, 0.03, 1.3),
    "angry": EmotionStyle(1.12, 0.14, 5.6, 0.95, 0.020, 0.02, 1.0),
    "sad": EmotionStyle(0.88, 0.05, 2.8, 0.28, 0.010, 0.09, 2.0),
}
VOWELS = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410)]


@dataclass(frozen=True)
class CorpusSpec:
    speakers_per_gender: int = 4
    utterances_per_emotion: int = 10
    seed: int = 0

    def fingerprint(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


def _resonator(frequency: float, bandwidth: float) -> tuple[np.ndarray, np.ndarray]:
    radius = np.exp(-np.pi * bandwidth / SAMPLING_RATE)
    theta = 2 * np.pi * frequency / SAMPLING_RATE
    return np.array([1 - radius]), np.array([1, -2 * radius * np.cos(theta), radius**2])


def synthesize_utterance(
    style: EmotionStyle, base_f0: float, formant_scale: float, rng: np.random.Generator
) -> np.ndarray:
    """One clip (float32, 16 kHz) of a speaker (``base_f0``, ``formant_scale``) in ``style``."""
    vary = lambda value, spread=0.1: value * (1 + spread * rng.standard_normal())  # noqa: E731
    syllables = int(rng.integers(4, 8))
    rate = max(1.5, vary(style.syllables_per_second))
    duration = syllables / rate + 0.2
    n = int(duration * SAMPLING_RATE)
    t = np.arange(n) / SAMPLING_RATE
    contour = 1 + vary(style.f0_range, 0.2) * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t + rng.uniform(0, 2 * np.pi))
    f0 = vary(base_f0 * style.f0_scale, 0.05) * contour * (1 - 0.08 * t / duration)  # declination
    f0 *= 1 + style.jitter * rng.standard_normal(n).cumsum() / np.sqrt(np.arange(1, n + 1))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLING_RATE
    harmonics = np.arange(1, 21)
    tilt = vary(style.tilt, 0.05)
    source = (np.sin(np.outer(phase, harmonics)) / harmonics**tilt).sum(axis=1)
    source += vary(style.breathiness, 0.2) * rng.standard_normal(n) * 3
    # syllables: each with its own vowel and a raised-cosine envelope
    signal = np.zeros(n)
    edges = np.linspace(0.1 * SAMPLING_RATE, n - 0.1 * SAMPLING_RATE, syllables + 1).astype(int)
    for start, stop in pairwise(edges):
        segment = source[start:stop]
        vowel = VOWELS[int(rng.integers(len(VOWELS)))]
        shaped = sum(lfilter(*_resonator(f * formant_scale, 80 + 0.1 * f), segment) for f in vowel)
        length = stop - start
        envelope = np.sin(np.pi * np.arange(length) / length) ** 0.7 * vary(1.0, 0.15)
        signal[start:stop] = shaped * envelope
    signal *= vary(style.energy, 0.1) / (np.abs(signal).max() + 1e-9)
    signal += 0.003 * rng.standard_normal(n)
    return np.clip(signal, -1, 1).astype(np.float32)


def synthesize_corpus(output_dir: str | Path, spec: CorpusSpec = CorpusSpec()) -> Path:
    """Write the corpus (``wav/*.wav`` + ``manifest.csv``) and return the manifest path.

    A folder that already holds the corpus of the same ``spec`` is reused.
    """
    root = Path(output_dir)
    manifest = root / "manifest.csv"
    stamp = root / "corpus.json"
    if (
        manifest.is_file()
        and stamp.is_file()
        and json.loads(stamp.read_text()).get("fingerprint") == spec.fingerprint()
    ):
        return manifest
    (root / "wav").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    speakers = []
    for gender, f0_low, f0_high in (("female", 185, 235), ("male", 100, 135)):
        for index in range(spec.speakers_per_gender):
            scale = rng.uniform(1.1, 1.2) if gender == "female" else rng.uniform(0.92, 1.02)
            speakers.append((f"{gender[0]}{index:02d}", gender, rng.uniform(f0_low, f0_high), scale))
    rows = []
    total = len(speakers) * len(EMOTION_STYLES) * spec.utterances_per_emotion
    with tqdm(total=total, desc="synthesising demo corpus", unit="clip", leave=False) as bar:
        for speaker, gender, base_f0, formant_scale in speakers:
            for emotion, style in EMOTION_STYLES.items():
                for number in range(spec.utterances_per_emotion):
                    name = f"{speaker}_{emotion}_{number:02d}.wav"
                    wave = synthesize_utterance(style, base_f0, formant_scale, rng)
                    soundfile.write(root / "wav" / name, wave, SAMPLING_RATE, subtype="PCM_16")
                    rows.append({"path": f"wav/{name}", "emotion": emotion, "gender": gender, "speaker": speaker})
                    bar.update()
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "emotion", "gender", "speaker"])
        writer.writeheader()
        writer.writerows(rows)
    stamp.write_text(json.dumps({"fingerprint": spec.fingerprint(), "spec": asdict(spec)}))
    return manifest
