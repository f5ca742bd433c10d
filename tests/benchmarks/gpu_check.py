"""What a GPU buys: k-means, a stage-1 training step and the pipeline, one table (run by gpu_check.sh).

    bash tests/benchmarks/gpu_check.sh              # full, on a CUDA GPU (sized for <= 8 minutes)
    bash tests/benchmarks/gpu_check.sh --reduced    # the same checks, small, on the CPU (CI runs this)

Full: our multi-scale k-means (K = 50, 100, 500) on 200k x 768 frames in memory and on 2M x 1024
frames streamed from a float16 shard store (written first, not timed); a stage-1 training step
(emotion + gender + three frame-label scales, AdamW, bf16 autocast) of base- and large-size HuBERT
(random weights) on a batch of 8 x 6 s; the audio-classification pipeline (base size) on 200 clips
of 2-6 s. Without a GPU the full run is refused: on two CPU cores it would take hours.
Device: the first GPU when torch sees one (``gmp_tl_hf.gmp.kmeans.resolve_device``), else the CPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kmeans import synthetic_frames, write_synthetic_store

from gmp_tl_hf import HubertForGMPEmotion, HubertGMPConfig, default_feature_extractor
from gmp_tl_hf.gmp.kmeans import MultiScaleKMeans, assign, resolve_device
from gmp_tl_hf.presets import encoder_preset

FULL = {
    "kmeans": [(200_000, 768, False), (2_000_000, 1024, True)],
    "scales": (50, 100, 500),
    "training": [("base", 8, 6.0, 10), ("large", 8, 6.0, 10)],
    "pipeline": ("base", 200),
}
REDUCED = {
    "kmeans": [(20_000, 64, False), (50_000, 64, True)],
    "scales": (5, 10, 50),
    "training": [("tiny", 2, 1.0, 3)],
    "pipeline": ("tiny", 10),
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_kmeans(frames: int, dim: int, streamed: bool, scales, device, folder: Path) -> tuple[str, float, str]:
    if streamed:
        features = write_synthetic_store(folder / f"store-{frames}x{dim}", frames, dim).frames()
    else:
        features = synthetic_frames(frames, dim)
    synchronize(device)
    start = time.perf_counter()
    codebooks = MultiScaleKMeans(scales, progress=False, device=device).fit(features)
    assign(features, codebooks)
    elapsed = time.perf_counter() - start
    name = f"k-means {list(scales)}, {frames} x {dim} {'streamed' if streamed else 'in memory'}, fit + assign"
    return name, elapsed, f"{frames / elapsed:,.0f} frames/s"


def check_training(size: str, batch: int, seconds: float, steps: int, device) -> tuple[str, float, str]:
    torch.manual_seed(0)
    config = HubertGMPConfig(
        **encoder_preset(size), num_labels=4, gmp_cluster_sizes=(50, 100, 500), layerdrop=0.0, mask_time_prob=0.05
    )
    model = HubertForGMPEmotion(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    samples = int(seconds * 16000)
    frames = model.num_frames(samples)
    inputs = {
        "input_values": torch.randn(batch, samples),
        "attention_mask": torch.ones(batch, samples, dtype=torch.long),
        "labels": torch.randint(0, 4, (batch,)),
        "gender_labels": torch.randint(0, 2, (batch,)),
        "gmp_labels": torch.stack([torch.randint(0, k, (batch, frames)) for k in (50, 100, 500)], dim=-1),
    }
    inputs["attention_mask"][1::2, int(0.75 * samples) :] = 0
    inputs = {name: value.to(device) for name, value in inputs.items()}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    times = []
    for step in range(steps + 2):  # two warm-up steps
        synchronize(device)
        start = time.perf_counter()
        with autocast:
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        synchronize(device)
        if step >= 2:
            times.append(time.perf_counter() - start)
    step_s = float(np.median(times))
    name = f"stage-1 training step, {size} HuBERT, batch {batch} x {seconds:g} s"
    return name, step_s, f"{batch * seconds / step_s:,.1f} audio s/s"


def check_pipeline(size: str, clips: int, device, folder: Path) -> tuple[str, float, str]:
    torch.manual_seed(0)
    model = HubertForGMPEmotion(HubertGMPConfig(**encoder_preset(size), num_labels=4, gmp_cluster_sizes=()))
    model.save_pretrained(folder / "model")
    default_feature_extractor().save_pretrained(folder / "model")
    classify = pipeline(
        "audio-classification", model=str(folder / "model"), trust_remote_code=True,
        device=device if device.type == "cuda" else -1,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    waves = [0.1 * rng.standard_normal(int(rng.uniform(2, 6) * 16000)).astype(np.float32) for _ in range(clips)]
    classify(waves[:2])  # warm-up
    synchronize(device)
    start = time.perf_counter()
    answers = classify(waves, batch_size=8)
    synchronize(device)
    elapsed = time.perf_counter() - start
    if len(answers) != clips:
        raise RuntimeError(f"the pipeline answered {len(answers)} of {clips} clips")
    audio = sum(len(w) for w in waves) / 16000
    return f"pipeline, {size} HuBERT, {clips} clips of 2-6 s, batch 8", elapsed, f"{audio / elapsed:,.1f} audio s/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reduced", action="store_true", help="small sizes (what CI runs on its CPU)")
    args = parser.parse_args()
    device = resolve_device("auto")
    if device.type != "cuda" and not args.reduced:
        sys.exit("gpu_check: torch sees no CUDA GPU; run with --reduced for the CPU version")
    plan = REDUCED if args.reduced else FULL
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for frames, dim, streamed in plan["kmeans"]:
            rows.append(check_kmeans(frames, dim, streamed, plan["scales"], device, Path(folder)))
        for size, batch, seconds, steps in plan["training"]:
            rows.append(check_training(size, batch, seconds, steps, device))
        rows.append(check_pipeline(*plan["pipeline"], device, Path(folder)))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\ndevice: {name}{' (reduced sizes)' if args.reduced else ''}\n")
    print("| check | seconds | throughput |")
    print("|---|---|---|")
    for check, seconds, throughput in rows:
        print(f"| {check} | {seconds:.2f} | {throughput} |")


if __name__ == "__main__":
    main()
