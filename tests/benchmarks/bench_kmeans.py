"""Multi-scale k-means: our engine vs fairseq's simple_kmeans recipe, side by side on the same frames.

fairseq (examples/hubert/simple_kmeans/learn_kmeans.py) fits one scikit-learn MiniBatchKMeans per
codebook (k-means++, batch 10000, max_iter 100, n_init 20, max_no_improvement 100, tol 0,
reassignment_ratio 0) on a ``--percent`` sample of the frames and labels every frame with
``predict`` (dump_km_label.py). Ours fits all scales together (gmp_tl_hf.gmp.kmeans.MultiScaleKMeans)
and labels with ``assign``. Inertia (mean squared distance to the nearest centroid, per scale) is
computed the same way for both, on all frames.

    python tests/benchmarks/bench_kmeans.py --repeats 3                 # 200k synthetic frames x 768
    python tests/benchmarks/bench_kmeans.py --source emodb --repeats 3  # EmoDB layer features (../shared)
    python tests/benchmarks/bench_kmeans.py --frames 2000000 --dim 1024 --store /tmp/km2m --percent 0.1

``--source emodb|ravdess12``: all clips of the corpus through a randomly initialised base HuBERT,
layer 9 (no pre-trained weights here). ``--store DIR``: the frames are written once as float16 shards
(the layout of the GMP feature store) and streamed from there: fairseq fits on its ``--percent``
sample held in memory and predicts shard by shard; ours runs on all frames (streamed) and on the same
sample. Every fit runs in its own process, so peak RSS is per method (the frames it holds and what it
allocates, from after the frames are ready to the end of assignment; Linux ``VmHWM``). A repeat is one paired run of
both methods with seed ``--seed + repeat``. The last lines are for scripts:
``speed ratio: N.Nx`` (fairseq total / ours) and ``worst inertia ratio: N.NNN`` (ours / fairseq,
worst scale), medians over the repeats, then their spread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import MiniBatchKMeans

from gmp_tl_hf.gmp.features import META_NAME, FrameFeatureStore, write_shard
from gmp_tl_hf.gmp.kmeans import MultiScaleKMeans, assign, inertia

REPO = Path(__file__).resolve().parents[2]
SHARD_FRAMES = 65536


def synthetic_frames(frames: int, dim: int, seed: int = 0, offset: int = 0) -> np.ndarray:
    """Clustered data shaped like speech features: 2000 Gaussian clusters of unequal size and spread
    around a few broad "phone classes", plus isotropic noise. ``offset``: a different chunk of the
    same distribution (for writing large sets in pieces)."""
    rng = np.random.default_rng(seed)
    broad = rng.standard_normal((40, dim)) * 3.0
    centers = broad[rng.integers(0, 40, 2000)] + rng.standard_normal((2000, dim))
    weights = rng.dirichlet(np.full(2000, 0.5))
    spread = rng.uniform(0.3, 1.0, 2000)
    rng = np.random.default_rng([seed, offset]) if offset else rng
    which = rng.choice(2000, frames, p=weights)
    return (centers[which] + rng.standard_normal((frames, dim)) * spread[which, None]).astype(np.float32)


def write_synthetic_store(directory: Path, frames: int, dim: int) -> FrameFeatureStore:
    """Synthetic frames as float16 shards (reused when already there)."""
    if (directory / META_NAME).is_file() and FrameFeatureStore(directory).num_frames == frames:
        return FrameFeatureStore(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / META_NAME).write_text(json.dumps({"layer": 0, "dim": dim, "model": "synthetic"}))
    for number, start in enumerate(range(0, frames, SHARD_FRAMES)):
        count = min(SHARD_FRAMES, frames - start)
        chunk = synthetic_frames(count, dim, offset=number + 1).astype(np.float16)
        write_shard(directory, f"r0-{number:05d}", [chunk], [f"chunk{number}"], [count], [number % 2])
    return FrameFeatureStore(directory)


def corpus_store(corpus: str, layer: int, directory: Path) -> FrameFeatureStore:
    """Layer features of every clip of a corpus in ../shared through a randomly initialised base HuBERT."""
    from gmp_tl_hf import HubertForGMPEmotion, HubertGMPConfig, default_feature_extractor
    from gmp_tl_hf.data import scan_audio
    from gmp_tl_hf.data.corpora import load_corpus
    from gmp_tl_hf.gmp.features import extract_frame_features
    from gmp_tl_hf.presets import encoder_preset

    torch.manual_seed(0)
    model = HubertForGMPEmotion(HubertGMPConfig(**encoder_preset("base"), gmp_cluster_sizes=())).eval()
    loader = {"ravdess12": "ravdess"}.get(corpus, corpus)  # the folder in ../shared/data -> its loader
    dataset = scan_audio(load_corpus(loader, REPO.parent / "shared" / "data" / corpus))
    return extract_frame_features(model, dataset, directory, layer, default_feature_extractor())


def fairseq_fit(features: np.ndarray, k: int, seed: int) -> MiniBatchKMeans:
    return MiniBatchKMeans(
        n_clusters=k, init="k-means++", max_iter=100, batch_size=10000, tol=0.0, max_no_improvement=100,
        n_init=20, reassignment_ratio=0.0, compute_labels=False, random_state=seed,
    ).fit(features)  # fmt: skip


def reset_peak_rss() -> None:
    """Linux: set this process's peak RSS to its current RSS (so data generation does not count)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def run_job(job: dict) -> dict:
    """One method on one data set, in this process: fit and assign seconds, inertia on all frames."""
    torch.set_num_threads(job["threads"])
    if job["store"]:
        store = FrameFeatureStore(job["store"])
        everything = store.frames()
        fit_on = store.frames(job["percent"], seed=job["seed"]) if job["percent"] < 1 else everything
        if job["method"] == "fairseq":
            fit_on = fit_on.take(np.arange(fit_on.num_frames))  # fairseq holds its sample in memory
    else:
        everything = fit_on = synthetic_frames(job["frames"], job["dim"])
    reset_peak_rss()  # peak from here on: the frames a method holds plus what it allocates
    result: dict = {"fit_s": {}, "assign_s": {}}
    if job["method"] == "fairseq":
        codebooks = []
        for k in job["scales"]:
            start = time.perf_counter()
            model = fairseq_fit(fit_on, k, job["seed"])
            result["fit_s"][k] = time.perf_counter() - start
            start = time.perf_counter()
            blocks = everything.blocks(SHARD_FRAMES) if job["store"] else [everything]
            for block in blocks:  # dump_km_label.py: predict shard by shard
                model.predict(block)
            result["assign_s"][k] = time.perf_counter() - start
            codebooks.append(model.cluster_centers_.astype(np.float32))
    else:
        start = time.perf_counter()
        kmeans = MultiScaleKMeans(tuple(job["scales"]), tol=job["tol"], seed=job["seed"], progress=False, device="cpu")
        codebooks = kmeans.fit(fit_on)
        result["fit_s"]["all"] = time.perf_counter() - start
        start = time.perf_counter()
        assign(everything, codebooks)
        result["assign_s"]["all"] = time.perf_counter() - start
    result["peak_rss_mb"] = peak_rss_mb()
    result["inertia"] = inertia(everything, codebooks)
    result["total_s"] = sum(result["fit_s"].values()) + sum(result["assign_s"].values())
    return result


def in_subprocess(job: dict) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--job", json.dumps(job)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def print_repeat(number: int, scales: list[int], fairseq: dict, ours: dict, sampled: dict | None, frames: int):
    print(f"\nrepeat {number + 1}: {frames} frames")
    print("| scale K | fairseq fit s | fairseq assign s | fairseq inertia | ours inertia | inertia ratio |")
    print("|---|---|---|---|---|---|")
    for i, k in enumerate(scales):
        f_inertia, o_inertia = fairseq["inertia"][i], ours["inertia"][i]
        fit, predict = fairseq["fit_s"][str(k)], fairseq["assign_s"][str(k)]
        print(f"| {k} | {fit:.1f} | {predict:.1f} | {f_inertia:.4f} | {o_inertia:.4f} | {o_inertia / f_inertia:.4f} |")
    for name, run in (("fairseq, one scale at a time", fairseq), ("ours, all scales together", ours)):
        fit, predict = sum(run["fit_s"].values()), sum(run["assign_s"].values())
        rss = run["peak_rss_mb"]
        print(f"{name}: {run['total_s']:.1f} s (fit {fit:.1f} + assign {predict:.1f}), peak RSS {rss:.0f} MB")
    if sampled is not None:
        ratios = " / ".join(f"{o / f:.4f}" for o, f in zip(sampled["inertia"], fairseq["inertia"]))
        print(
            f"ours on fairseq's sample: {sampled['total_s']:.1f} s, peak RSS {sampled['peak_rss_mb']:.0f} MB, "
            f"inertia ratio per scale {ratios}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=["synthetic", "emodb", "ravdess12"], default="synthetic")
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--scales", type=int, nargs="+", default=[50, 100, 500])
    parser.add_argument("--layer", type=int, default=9)
    parser.add_argument("--store", default=None, help="stream the frames from a float16 shard store here")
    parser.add_argument("--percent", type=float, default=1.0, help="fraction fairseq fits on (with --store)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=MultiScaleKMeans.tol, help="ours: stop a scale below this gain")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--job", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        print(json.dumps(run_job(json.loads(args.job))))
        return

    store = args.store
    if args.source != "synthetic":
        store = store or tempfile.mkdtemp(prefix=f"bench_kmeans_{args.source}_")
        frames = corpus_store(args.source, args.layer, Path(store)).num_frames
    elif store:
        frames = write_synthetic_store(Path(store), args.frames, args.dim).num_frames
    else:
        frames = args.frames
    print(f"frames: {frames} ({args.source}{', streamed from ' + store if store else ''}), "
          f"fairseq fits on {args.percent:.0%}, our tol: {args.tol:g}, torch threads: {args.threads}")  # fmt: skip

    speed, worst = [], []
    for repeat in range(args.repeats):
        job = {
            "store": store, "frames": args.frames, "dim": args.dim, "scales": args.scales, "percent": args.percent,
            "seed": args.seed + repeat, "threads": args.threads, "tol": args.tol,
        }  # fmt: skip
        fairseq = in_subprocess({**job, "method": "fairseq"})
        ours = in_subprocess({**job, "method": "ours", "percent": 1.0})
        sampled = in_subprocess({**job, "method": "ours"}) if args.percent < 1 else None
        print_repeat(repeat, args.scales, fairseq, ours, sampled, frames)
        speed.append(fairseq["total_s"] / ours["total_s"])
        worst.append(max(o / f for o, f in zip(ours["inertia"], fairseq["inertia"])))
        print(f"repeat {repeat + 1}: speed ratio {speed[-1]:.1f}x, worst inertia ratio {worst[-1]:.4f}")

    print(f"\nspeed ratio: {statistics.median(speed):.1f}x")
    print(f"worst inertia ratio: {statistics.median(worst):.3f}")
    if args.repeats > 1:
        print(f"speed ratio spread: {min(speed):.1f}x .. {max(speed):.1f}x over {args.repeats} paired runs")
        print(f"worst inertia ratio spread: {min(worst):.3f} .. {max(worst):.3f}")


if __name__ == "__main__":
    main()
