"""Long recordings through the pipeline: time and peak memory against length, chunked and whole.

A base-width (12 x 768) random HuBERT checkpoint answers emotion, gender and a 0.5 s timeline for
recordings made by concatenating real clips of ../shared/data/emodb (a harmonic test signal where the
corpus is absent). Each measurement runs in a fresh process, so its peak RSS is its own.

    python tests/benchmarks/bench_long_audio.py [--minutes 5 20 60] [--whole 1 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch
from transformers import pipeline

from gmp_tl_hf import HubertForGMPEmotion, HubertGMPConfig, default_feature_extractor
from gmp_tl_hf.presets import encoder_preset

EMODB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "emodb"
RATE = 16000


def make_checkpoint(directory: Path) -> None:
    torch.manual_seed(0)
    labels = ["anger", "boredom", "disgust", "fear", "happiness", "neutral", "sadness"]
    config = HubertGMPConfig(
        **encoder_preset("base"), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
    )
    config.gender_head_trained = True  # random, but lets the benchmark ask for the gender as users do
    HubertForGMPEmotion(config).eval().save_pretrained(directory)
    default_feature_extractor().save_pretrained(directory)


def recording(minutes: float) -> np.ndarray:
    """Real speech clips end to end (repeated) until ``minutes`` long."""
    total = int(minutes * 60 * RATE)
    clips = sorted(EMODB.glob("wav/*.wav"))[:200] if EMODB.is_dir() else []
    if not clips:
        t = np.arange(total) / RATE
        return (0.1 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    pieces, length, index = [], 0, 0
    while length < total:
        wave, rate = soundfile.read(clips[index % len(clips)], dtype="float32")
        assert rate == RATE, f"{clips[index % len(clips)]}: {rate} Hz"
        pieces.append(wave)
        length += len(wave)
        index += 1
    return np.concatenate(pieces)[:total]


def measure_one(checkpoint: str, minutes: float, chunk_length_s: float, threads: int) -> dict:
    torch.set_num_threads(threads)
    classify = pipeline("audio-classification", model=checkpoint, trust_remote_code=True)
    wave = recording(minutes)
    start = time.perf_counter()
    result = classify(wave, return_gender=True, return_timeline=True, chunk_length_s=chunk_length_s)
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "peak_gb": peak_kb / 2**20, "windows": len(result["timeline"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 20, 60], help="chunked runs")
    parser.add_argument("--whole", type=float, nargs="*", default=[1, 3], help="unchunked runs (the baseline)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", nargs=3, metavar=("CHECKPOINT", "MINUTES", "CHUNK_S"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one[0], float(args.one[1]), float(args.one[2]), args.threads)))
        return
    with tempfile.TemporaryDirectory() as directory:
        make_checkpoint(Path(directory))
        runs = [(m, 0.0) for m in args.whole] + [(m, 30.0) for m in args.minutes]
        print(f"base-width random HuBERT, {args.threads} torch threads, speech from {EMODB if EMODB.is_dir() else '-'}")
        print("| recording | chunking | time (s) | x real time | s per audio minute | peak RSS (GB) | windows |")
        print("|---|---|---|---|---|---|---|")
        for minutes, chunk in runs:
            command = [sys.executable, __file__, "--threads", str(args.threads), "--one", directory, str(minutes)]
            output = subprocess.run([*command, str(chunk)], capture_output=True, text=True)
            if output.returncode != 0:
                print(f"| {minutes:g} min | {'30 s chunks' if chunk else 'whole'} | failed: {output.stderr[-300:]!r} |")
                continue
            row = json.loads(output.stdout.strip().splitlines()[-1])
            print(
                f"| {minutes:g} min | {'30 s chunks + 5 s context' if chunk else 'whole (no chunking)'} "
                f"| {row['seconds']:.1f} | {minutes * 60 / row['seconds']:.1f} | {row['seconds'] / minutes:.1f} "
                f"| {row['peak_gb']:.2f} | {row['windows']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
