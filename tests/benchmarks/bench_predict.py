"""`gmp-tl predict` throughput on the real corpora: files per second, batch 1 against batched.

A base-width (12 x 768) random checkpoint (or --model) labels the first --limit files of each corpus in
../shared/data, with gender, writing CSV; both batch sizes run in this process, one after the other.

    python tests/benchmarks/bench_predict.py [--limit 120] [--batch_size 8] [--threads 2] [--model DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from gmp_tl_hf import HubertForGMPEmotion, HubertGMPConfig, default_feature_extractor
from gmp_tl_hf.predict import predict
from gmp_tl_hf.presets import encoder_preset

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=120)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        model = args.model
        if model is None:
            torch.manual_seed(0)
            config = HubertGMPConfig(**encoder_preset("base"), num_labels=7)
            config.gender_head_trained = True  # random, but answered as a user would ask
            HubertForGMPEmotion(config).eval().save_pretrained(Path(directory) / "model")
            default_feature_extractor().save_pretrained(Path(directory) / "model")
            model = str(Path(directory) / "model")
        print(f"model {args.model or 'base-width random'}, {args.threads} threads, first {args.limit} files")
        print("| corpus | files | batch | seconds | files/s | speed-up |\n|---|---|---|---|---|---|")
        for corpus in ("emodb", "ravdess12"):
            files = sorted(str(p) for p in (SHARED / corpus).rglob("*.wav"))[: args.limit]
            if not files:
                print(f"| {corpus} | absent | | | | |")
                continue
            seconds = {}
            for batch in (1, args.batch_size):
                output = Path(directory) / f"{corpus}-{batch}.csv"
                start = time.perf_counter()
                counts = predict(model, files, output, batch_size=batch, threads=args.threads)
                seconds[batch] = time.perf_counter() - start
                assert counts["failed"] == 0, counts
                speed_up = seconds[1] / seconds[batch]
                print(f"| {corpus} | {len(files)} | {batch} | {seconds[batch]:.1f} | {len(files) / seconds[batch]:.2f} "
                      f"| {speed_up:.2f}x |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
