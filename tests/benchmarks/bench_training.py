"""Training step time and peak memory: HubertForGMPEmotion (all heads and losses on) vs
transformers' HubertForSequenceClassification with the same encoder, side by side.

    python tests/benchmarks/bench_training.py                      # tiny and base-size encoders
    python tests/benchmarks/bench_training.py --sizes tiny --steps 20

Each (size, model) runs in its own process so that its peak resident memory (ru_maxrss) is its own;
timing starts after warm-up steps. A step is forward + backward + AdamW update on a padded batch
(lengths 100 % and 75 % of ``--seconds``); the GMP model also gets gender labels and frame labels
for 3 scales (50, 100, 500).
The table gives the median step time, the ratio to HubertForSequenceClassification and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch


def measure(size: str, kind: str, batch: int, seconds: float, steps: int) -> dict:
    from transformers import HubertConfig, HubertForSequenceClassification

    from gmp_tl_hf import HubertForGMPEmotion, HubertGMPConfig
    from gmp_tl_hf.presets import encoder_preset

    torch.manual_seed(0)
    sizes = {**encoder_preset(size), "layerdrop": 0.0, "mask_time_prob": 0.0}
    if kind == "gmp":
        model = HubertForGMPEmotion(HubertGMPConfig(**sizes, num_labels=4, gmp_cluster_sizes=(50, 100, 500)))
    else:
        model = HubertForSequenceClassification(HubertConfig(**sizes, num_labels=4))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    samples = int(seconds * 16000)
    values = torch.randn(batch, samples)
    mask = torch.ones(batch, samples, dtype=torch.long)
    mask[1::2, int(0.75 * samples) :] = 0
    inputs = {"input_values": values, "attention_mask": mask, "labels": torch.randint(0, 4, (batch,))}
    if kind == "gmp":
        frames = model.num_frames(samples)
        inputs["gender_labels"] = torch.randint(0, 2, (batch,))
        inputs["gmp_labels"] = torch.stack([torch.randint(0, k, (batch, frames)) for k in (50, 100, 500)], dim=-1)
    times = []
    warmup = 10 if size == "tiny" else 3  # oneDNN settles its conv kernels over the first steps
    for step in range(warmup + steps):
        start = time.perf_counter()
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return {
        "step_s": statistics.median(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "base"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (tiny); base-size uses a third")
    parser.add_argument("--worker", nargs=2, metavar=("SIZE", "KIND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        steps = args.steps if args.worker[0] == "tiny" else max(3, args.steps // 3)
        print(json.dumps(measure(*args.worker, args.batch, args.seconds, steps)))
        return
    threads = torch.get_num_threads()
    print(f"batch {args.batch} x {args.seconds:.0f} s (one clip in two padded to 75 %), torch threads {threads}\n")
    print("| encoder | model | step time | ratio | peak RSS |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        results = {}
        for kind in ("seqcls", "gmp"):
            command = [sys.executable, __file__, "--worker", size, kind, "--batch", str(args.batch),
                       "--seconds", str(args.seconds), "--steps", str(args.steps)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            results[kind] = json.loads(done.stdout.strip().splitlines()[-1])
        base = results["seqcls"]["step_s"]
        names = {"seqcls": "HubertForSequenceClassification", "gmp": "HubertForGMPEmotion (emotion+gender+3 GMP heads)"}
        for kind, result in results.items():
            ratio = result["step_s"] / base
            step_ms, rss = 1000 * result["step_s"], result["peak_rss_mb"]
            print(f"| {size} | {names[kind]} | {step_ms:.0f} ms | {ratio:.3f} | {rss:.0f} MB |")


if __name__ == "__main__":
    main()
