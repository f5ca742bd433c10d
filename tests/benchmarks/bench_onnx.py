"""onnxruntime against torch on CPU: a base-width (12 x 768) checkpoint exported by `gmp-tl export-onnx`,
the same real clips, batch 1 (clip by clip) and batch 8 (eight clips cropped to one length, unpadded).

Both sides compute the exported outputs (emotion, gender, 0.5 s windows, per-frame logits) with the same
thread count, in one process, alternating per repeat; the table gives the median over repeats.

    python tests/benchmarks/bench_onnx.py [--clips 64] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import soundfile
import torch

from gmp_tl_hf import HubertForGMPEmotion, HubertGMPConfig, default_feature_extractor
from gmp_tl_hf.onnx_export import UnpaddedEmotionModel, export_onnx
from gmp_tl_hf.presets import encoder_preset

EMODB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "emodb"


def real_clips(count: int) -> list[np.ndarray]:
    paths = sorted(EMODB.glob("*.wav"))[:count]
    if not paths:
        raise SystemExit(f"no clips in {EMODB}: this benchmark reads real speech from ../shared")
    return [soundfile.read(path, dtype="float32")[0] for path in paths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    extractor = default_feature_extractor()
    clips = [extractor(c, sampling_rate=16000, return_tensors="np").input_values[0] for c in real_clips(args.clips)]
    crop = min(len(c) for c in clips)
    batches = {
        1: [c[None, :] for c in clips],
        8: [np.stack([c[:crop] for c in clips[i : i + 8]]) for i in range(0, len(clips) - 7, 8)],
    }
    with tempfile.TemporaryDirectory() as directory:
        torch.manual_seed(0)
        config = HubertGMPConfig(**encoder_preset("base"), num_labels=7)
        model = HubertForGMPEmotion(config).eval()
        model.save_pretrained(Path(directory) / "checkpoint")
        export_onnx(Path(directory) / "checkpoint", Path(directory) / "onnx")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = onnxruntime.InferenceSession(str(Path(directory) / "onnx" / "model.onnx"), options)
        exported = UnpaddedEmotionModel(model, window_frames=25).eval()

        def run_torch(batch: np.ndarray) -> None:
            with torch.inference_mode():
                exported(torch.from_numpy(batch))

        def run_onnx(batch: np.ndarray) -> None:
            session.run(None, {"input_values": batch})

        audio_seconds = {size: sum(b.shape[0] * b.shape[1] for b in batches[size]) / 16000 for size in batches}
        print(f"base-width random HuBERT, {args.threads} threads, {len(clips)} EmoDB clips, crop {crop / 16000:.2f} s")
        print("| batch | audio (s) | torch (s) | onnxruntime (s) | speed-up |\n|---|---|---|---|---|")
        for size, items in batches.items():
            for item in items[:2]:  # warm-up
                run_torch(item)
                run_onnx(item)
            times = {"torch": [], "onnx": []}
            for _ in range(args.repeats):
                for name, runner in (("torch", run_torch), ("onnx", run_onnx)):
                    start = time.perf_counter()
                    for item in items:
                        runner(item)
                    times[name].append(time.perf_counter() - start)
            torch_s, onnx_s = statistics.median(times["torch"]), statistics.median(times["onnx"])
            print(f"| {size} | {audio_seconds[size]:.1f} | {torch_s:.2f} | {onnx_s:.2f} | {torch_s / onnx_s:.2f}x |")


if __name__ == "__main__":
    main()
