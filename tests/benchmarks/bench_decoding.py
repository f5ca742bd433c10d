"""Decode + resample throughput: our soundfile + soxr path vs datasets' torchcodec (FFmpeg) path.

    python tests/benchmarks/bench_decoding.py          # EmoDB from ../shared/data/emodb

Two inputs: EmoDB as released (16 kHz WAV: decode only) and a 44.1 kHz copy written by this script
(decode + resample to 16 kHz). Each path turns every clip into a float32 mono 16 kHz array; the
table gives clips/s and audio-seconds/s, best of ``--repeats`` passes, single process. The
torchcodec rows appear only where ``torchcodec`` (and FFmpeg's libraries) can be imported.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import soxr

from gmp_tl_hf.models.audio_io import load_waveform

REPO = Path(__file__).resolve().parents[2]


def ours(paths: list[str]) -> list[np.ndarray]:
    return [load_waveform(path) for path in paths]


def datasets_torchcodec(paths: list[str]) -> list[np.ndarray]:
    from datasets import Audio, Dataset

    dataset = Dataset.from_dict({"audio": paths}).cast_column("audio", Audio(sampling_rate=16000, num_channels=1))
    return [np.asarray(row["audio"]["array"], dtype=np.float32).reshape(-1) for row in dataset]


def snr_db(reference: list[np.ndarray], other: list[np.ndarray]) -> float:
    """Signal-to-difference ratio of two decodings over all clips (inf when identical)."""
    signal = noise = 0.0
    for a, b in zip(reference, other):
        n = min(len(a), len(b))
        signal += float(np.sum(a[:n].astype(np.float64) ** 2))
        noise += float(np.sum((a[:n].astype(np.float64) - b[:n]) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(signal / noise)


def best_time(function, paths: list[str], repeats: int) -> tuple[float, list[np.ndarray]]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(paths)
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data" / "emodb"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    native = sorted(str(p) for p in Path(args.data_dir).glob("*.wav"))
    if not native:
        raise SystemExit(f"no wav files in {args.data_dir}")
    with tempfile.TemporaryDirectory() as scratch:
        upsampled = []
        for path in native:
            wave, rate = soundfile.read(path, dtype="float32")
            target = Path(scratch) / Path(path).name
            soundfile.write(target, soxr.resample(wave, rate, 44100), 44100, subtype="PCM_16")
            upsampled.append(str(target))
        seconds = sum(soundfile.info(p).duration for p in native)
        try:
            import torchcodec  # noqa: F401

            paths_to_run = {"soundfile + soxr (ours)": ours, "datasets + torchcodec": datasets_torchcodec}
        except Exception as error:  # ImportError, or FFmpeg libraries missing (RuntimeError/OSError)
            print(f"torchcodec unavailable here ({type(error).__name__}: {error}); measuring ours only")
            paths_to_run = {"soundfile + soxr (ours)": ours}
        print(f"{len(native)} clips, {seconds / 60:.1f} min of audio\n")
        print("| input | path | clips/s | audio s/s | agreement with ours (SNR) |")
        print("|---|---|---|---|---|")
        for label, paths in (
            ("EmoDB 16 kHz WAV (decode)", native),
            ("EmoDB at 44.1 kHz (decode + resample)", upsampled),
        ):
            reference = None
            for name, function in paths_to_run.items():
                elapsed, waves = best_time(function, paths, args.repeats)
                if reference is None:
                    reference, agreement = waves, "–"
                else:
                    agreement = f"{snr_db(reference, waves):.1f} dB"
                print(f"| {label} | {name} | {len(paths) / elapsed:.0f} | {seconds / elapsed:.0f} | {agreement} |")


if __name__ == "__main__":
    main()
