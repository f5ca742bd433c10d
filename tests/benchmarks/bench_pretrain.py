"""Pre-training throughput (seconds of audio per second) against a stage-1 fine-tuning step of the same
encoder, both measured in this run.

    python tests/benchmarks/bench_pretrain.py                           # tiny, small and base widths
    python tests/benchmarks/bench_pretrain.py --sizes tiny --steps 10 --threads 2

A step is forward + backward + AdamW update on a batch of ``--batch`` clips of ``--seconds`` seconds, in
float32 as the CPU configs train (``--bf16``: under bf16 autocast, for CPUs with bf16 instructions).
Pre-training: HuBERT's masked prediction over one target set of 100 codewords (mask_prob 0.8, span 10).
Baseline: ``HubertForGMPEmotion`` with emotion, gender and three GMP scales (50/100/500), the stage-1
step. Median step time after one warm-up step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from transformers import HubertConfig

from gmp_tl_hf import HubertForGMPEmotion, HubertGMPConfig
from gmp_tl_hf.models.configuration_hubert_gmp import conv_output_length
from gmp_tl_hf.models.modeling_hubert_gmp import LengthAwareHubertModel
from gmp_tl_hf.presets import encoder_preset
from gmp_tl_hf.pretraining import MaskedPredictionModel, MaskedPredictionSettings


def step_seconds(model: torch.nn.Module, batch: dict, steps: int, bf16: bool) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small", "base"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (slow on CPUs without bf16 instructions)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    precision = "bf16 autocast" if args.bf16 else "float32"
    print(f"batch {args.batch} x {args.seconds:g} s, {precision}, {args.threads} threads, median of {args.steps} steps")
    print("| width | pre-training step | audio s / s | stage-1 step | audio s / s | pre-training / stage 1 |")
    print("|---|---|---|---|---|---|")
    audio = args.batch * args.seconds
    for size in args.sizes:
        torch.manual_seed(0)
        np.random.seed(0)
        sizes = {**encoder_preset(size), "layerdrop": 0.0}
        waves = torch.randn(args.batch, int(16000 * args.seconds))
        config = HubertConfig(**sizes)
        frames = int(conv_output_length(waves.shape[1], config.conv_kernel, config.conv_stride))
        pretrain = MaskedPredictionModel(LengthAwareHubertModel(config), MaskedPredictionSettings((100,)))
        targets = torch.randint(0, 100, (args.batch, frames, 1))
        pretrain_s = step_seconds(
            pretrain.train(), {"input_values": waves, "gmp_labels": targets}, args.steps, args.bf16
        )
        finetune = HubertForGMPEmotion(HubertGMPConfig(**sizes, num_labels=4, gmp_cluster_sizes=(50, 100, 500)))
        batch = {
            "input_values": waves,
            "labels": torch.randint(0, 4, (args.batch,)),
            "gender_labels": torch.randint(0, 2, (args.batch,)),
            "gmp_labels": torch.stack([torch.randint(0, k, (args.batch, frames)) for k in (50, 100, 500)], dim=-1),
        }
        finetune_s = step_seconds(finetune.train(), batch, args.steps, args.bf16)
        cells = [f"{pretrain_s:.2f} s", f"{audio / pretrain_s:.1f}", f"{finetune_s:.2f} s", f"{audio / finetune_s:.1f}"]
        print(f"| {size} | {' | '.join(cells)} | {pretrain_s / finetune_s:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
