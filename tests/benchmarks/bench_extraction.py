"""GMP extraction speed and how it scales: frame features (streamed to disk) + multi-scale k-means.

    python tests/benchmarks/bench_extraction.py                 # small encoder, EmoDB x1, x2, x4
    python tests/benchmarks/bench_extraction.py --size base --scales 1

Each data size runs in its own process (EmoDB repeated 1x, 2x, 4x with distinct ids), so peak RSS is
per run. Features: layer 3/4 of the depth; k-means: K = 50, 100, 500 fitted on at most
``--max_fit_frames`` sampled frames. Time should grow linearly with the data and memory stay flat.
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

import torch

REPO = Path(__file__).resolve().parents[2]


def measure(size: str, repeat: int, data_dir: str, max_fit_frames: int) -> dict:
    from datasets import concatenate_datasets

    from gmp_tl_hf import HubertForGMPEmotion, HubertGMPConfig, default_feature_extractor
    from gmp_tl_hf.data import scan_audio
    from gmp_tl_hf.data.corpora import load_corpus
    from gmp_tl_hf.gmp.features import extract_frame_features
    from gmp_tl_hf.gmp.kmeans import MultiScaleKMeans
    from gmp_tl_hf.presets import encoder_preset
    from gmp_tl_hf.recipes.extract_gmp import default_layer

    torch.manual_seed(0)
    model = HubertForGMPEmotion(HubertGMPConfig(**encoder_preset(size), gmp_cluster_sizes=())).eval()
    base = scan_audio(load_corpus("emodb", data_dir))
    copies = [base.map(lambda row, k=k: {"id": f"{row['id']}-{k}"}) for k in range(repeat)]
    dataset = concatenate_datasets(copies)
    layer = default_layer(model.config.num_hidden_layers)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        store = extract_frame_features(model, dataset, folder, layer, default_feature_extractor())
        features_s = time.perf_counter() - start
        start = time.perf_counter()
        sample, _ = store.sample(max_frames=max_fit_frames)
        MultiScaleKMeans((50, 100, 500), progress=False).fit(sample)
        kmeans_s = time.perf_counter() - start
        frames = store.num_frames
    return {
        "clips": len(dataset),
        "frames": frames,
        "features_s": features_s,
        "kmeans_s": kmeans_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data" / "emodb"))
    parser.add_argument("--size", default="small", choices=["tiny", "small", "base"])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4], help="data sizes, in copies of EmoDB")
    parser.add_argument("--max_fit_frames", type=int, default=50_000)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.size, args.worker, args.data_dir, args.max_fit_frames)))
        return
    print(f"{args.size} encoder, k-means on <= {args.max_fit_frames} frames, torch threads {torch.get_num_threads()}\n")
    print("| data | clips | frames | features | frames/s | k-means | total | peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for repeat in args.scales:
        command = [sys.executable, __file__, "--worker", str(repeat), "--size", args.size, "--data_dir", args.data_dir,
                   "--max_fit_frames", str(args.max_fit_frames)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        total = r["features_s"] + r["kmeans_s"]
        rate, rss = r["frames"] / r["features_s"], r["peak_rss_mb"]
        print(f"| EmoDB x{repeat} | {r['clips']} | {r['frames']} | {r['features_s']:.1f} s | "
              f"{rate:.0f} | {r['kmeans_s']:.1f} s | {total:.1f} s | {rss:.0f} MB |")  # fmt: skip


if __name__ == "__main__":
    main()
