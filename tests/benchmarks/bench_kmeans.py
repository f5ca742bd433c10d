"""Multi-scale k-means: our engine vs fairseq's simple_kmeans recipe, side by side on the same frames.

fairseq (examples/hubert/simple_kmeans/learn_kmeans.py) fits one scikit-learn MiniBatchKMeans per
codebook (k-means++, batch 10000, max_iter 100, n_init 20, max_no_improvement 100, tol 0,
reassignment_ratio 0) and labels with ``predict``. Ours fits all scales together
(gmp_tl_hf.gmp.kmeans.MultiScaleKMeans) and labels with ``assign``.

    python tests/benchmarks/bench_kmeans.py                      # 200k synthetic frames, 768 dims
    python tests/benchmarks/bench_kmeans.py --source emodb       # EmoDB through a random base encoder

Prints fit and assign seconds and inertia per frame for each scale, then the speed ratio (fairseq
total / ours) and the inertia ratio (ours / fairseq) per scale.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import MiniBatchKMeans

from gmp_tl_hf.gmp.kmeans import MultiScaleKMeans, assign, inertia

REPO = Path(__file__).resolve().parents[2]


def synthetic_frames(frames: int, dim: int, seed: int = 0) -> np.ndarray:
    """Clustered data shaped like speech features: 2000 Gaussian clusters of unequal size and spread
    around a few broad "phone classes", plus isotropic noise."""
    rng = np.random.default_rng(seed)
    broad = rng.standard_normal((40, dim)) * 3.0
    centers = broad[rng.integers(0, 40, 2000)] + rng.standard_normal((2000, dim))
    weights = rng.dirichlet(np.full(2000, 0.5))
    spread = rng.uniform(0.3, 1.0, 2000)
    which = rng.choice(2000, frames, p=weights)
    return (centers[which] + rng.standard_normal((frames, dim)) * spread[which, None]).astype(np.float32)


def emodb_frames(layer: int) -> np.ndarray:
    """Layer features of all of EmoDB (../shared) through a randomly initialised base-size HuBERT."""
    from gmp_tl_hf import HubertForGMPEmotion, HubertGMPConfig, default_feature_extractor
    from gmp_tl_hf.data import scan_audio
    from gmp_tl_hf.data.corpora import load_corpus
    from gmp_tl_hf.gmp.features import extract_frame_features
    from gmp_tl_hf.presets import encoder_preset

    torch.manual_seed(0)
    model = HubertForGMPEmotion(HubertGMPConfig(**encoder_preset("base"), gmp_cluster_sizes=()))
    dataset = scan_audio(load_corpus("emodb", REPO.parent / "shared" / "data" / "emodb"))
    store = extract_frame_features(
        model, dataset, "/tmp/bench_kmeans_emodb", layer, default_feature_extractor(), overwrite=True
    )
    return store.sample()[0]


def fairseq_kmeans(features: np.ndarray, k: int, seed: int):
    model = MiniBatchKMeans(
        n_clusters=k,
        init="k-means++",
        max_iter=100,
        batch_size=10000,
        tol=0.0,
        max_no_improvement=100,
        n_init=20,
        reassignment_ratio=0.0,
        compute_labels=False,
        random_state=seed,
    )
    start = time.perf_counter()
    model.fit(features)
    fit = time.perf_counter() - start
    start = time.perf_counter()
    model.predict(features)
    return fit, time.perf_counter() - start, -model.score(features) / len(features)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=["synthetic", "emodb"], default="synthetic")
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--scales", type=int, nargs="+", default=[50, 100, 500])
    parser.add_argument("--layer", type=int, default=9)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    features = (
        synthetic_frames(args.frames, args.dim, args.seed) if args.source == "synthetic" else emodb_frames(args.layer)
    )
    print(
        f"frames: {features.shape[0]} x {features.shape[1]} ({args.source}), torch threads: {torch.get_num_threads()}"
    )

    baseline = {k: fairseq_kmeans(features, k, args.seed) for k in args.scales}

    start = time.perf_counter()
    codebooks = MultiScaleKMeans(tuple(args.scales), seed=args.seed, progress=False).fit(features)
    ours_fit = time.perf_counter() - start
    start = time.perf_counter()
    assign(features, codebooks)
    ours_assign = time.perf_counter() - start
    ours_inertia = inertia(features, codebooks)

    print(
        "\n| scale K | fairseq fit s | fairseq assign s | fairseq inertia/frame | ours inertia/frame | inertia ratio |"
    )
    print("|---|---|---|---|---|---|")
    for k, value in zip(args.scales, ours_inertia):
        fit, predict, base_inertia = baseline[k]
        print(f"| {k} | {fit:.1f} | {predict:.1f} | {base_inertia:.4f} | {value:.4f} | {value / base_inertia:.4f} |")
    baseline_total = sum(fit + predict for fit, predict, _ in baseline.values())
    ours_total = ours_fit + ours_assign
    print(f"\nfairseq, one scale at a time: {baseline_total:.1f} s (fit + assign)")
    print(f"ours, all scales together:    {ours_total:.1f} s (fit {ours_fit:.1f} + assign {ours_assign:.1f})")
    print(
        f"speed ratio: {baseline_total / ours_total:.1f}x; worst inertia ratio: "
        f"{max(v / baseline[k][2] for k, v in zip(args.scales, ours_inertia)):.4f}"
    )


if __name__ == "__main__":
    main()
