"""Inference throughput: our audio-classification pipeline vs the stock one, same model, same clips.

    python tests/benchmarks/bench_pipeline.py                   # base-size random model, 100 EmoDB clips
    python tests/benchmarks/bench_pipeline.py --size small --clips 535

Both pipelines get 16 kHz numpy arrays (decoding is not timed; the stock pipeline cannot read files
without the ffmpeg binary). Batch 1, and batch 8 over the whole list: the stock pipeline batches in
the given order, ours reorders the list longest-first (length grouping) and restores the order.
Reported: clips/s and real-time factor (processing time / audio duration; lower is faster).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AudioClassificationPipeline, pipeline

from gmp_tl_hf import HubertForGMPEmotion, HubertGMPConfig, default_feature_extractor
from gmp_tl_hf.models.audio_io import load_waveform
from gmp_tl_hf.presets import encoder_preset

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data" / "emodb"))
    parser.add_argument("--size", default="base", choices=["tiny", "small", "base"])
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=8)
    args = parser.parse_args()

    paths = sorted(Path(args.data_dir).glob("*.wav"))
    paths = [paths[i] for i in np.linspace(0, len(paths) - 1, min(args.clips, len(paths))).astype(int)]
    waves = [load_waveform(path) for path in paths]
    audio_seconds = sum(len(w) for w in waves) / 16000
    torch.manual_seed(0)
    model = HubertForGMPEmotion(HubertGMPConfig(**encoder_preset(args.size), num_labels=4, gmp_cluster_sizes=()))
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        default_feature_extractor().save_pretrained(folder)
        ours = pipeline("audio-classification", model=folder, trust_remote_code=True)
        stock = AudioClassificationPipeline(model=ours.model, feature_extractor=ours.feature_extractor)
        print(f"{len(waves)} EmoDB clips, {audio_seconds:.0f} s of audio, {args.size} encoder, "
              f"torch threads {torch.get_num_threads()}\n")  # fmt: skip
        print("| pipeline | batch | clips/s | real-time factor |")
        print("|---|---|---|---|")
        for batch_size in (1, args.batch_size):
            for name, classify in (
                ("stock AudioClassificationPipeline", stock),
                ("ours (SpeechEmotionPipeline)", ours),
            ):
                classify(waves[:2], batch_size=batch_size)  # warm-up
                start = time.perf_counter()
                outputs = classify(waves, batch_size=batch_size)
                elapsed = time.perf_counter() - start
                assert len(outputs) == len(waves)
                print(f"| {name} | {batch_size} | {len(waves) / elapsed:.2f} | {elapsed / audio_seconds:.3f} |")


if __name__ == "__main__":
    main()
