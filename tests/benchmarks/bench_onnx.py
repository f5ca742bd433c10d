"""onnxruntime against torch on CPU: a base-width (12 x 768) checkpoint exported by `gmp-tl export-onnx`
(float32, and with `--quantize int8`), the same real clips, batch 1 (clip by clip) and batch 8 (eight
clips cropped to one length, unpadded).

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
        sessions = {}
        for quantize in (None, "int8"):
            folder = Path(directory) / f"onnx-{quantize or 'float32'}"
            record = export_onnx(Path(directory) / "checkpoint", folder, quantize=quantize)
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = args.threads
            sessions[quantize or "float32"] = onnxruntime.InferenceSession(str(folder / "model.onnx"), options)
            print(f"{quantize or 'float32'} export: largest score difference to torch on the test clips "
                  f"{max(record['max_score_difference'].values()):.1e}")  # fmt: skip
        exported = UnpaddedEmotionModel(model, window_frames=25).eval()

        def run_torch(batch: np.ndarray) -> None:
            with torch.inference_mode():
                exported(torch.from_numpy(batch))

        def onnx_runner(name: str):
            return lambda batch: sessions[name].run(None, {"input_values": batch})

        audio_seconds = {size: sum(b.shape[0] * b.shape[1] for b in batches[size]) / 16000 for size in batches}
        print(f"base-width random HuBERT, {args.threads} threads, {len(clips)} EmoDB clips, crop {crop / 16000:.2f} s")
        runners = {"torch": run_torch, "float32": onnx_runner("float32"), "int8": onnx_runner("int8")}
        print("| batch | audio (s) | torch (s) | ORT float32 (s) | speed-up | ORT int8 (s) | speed-up |")
        print("|---|---|---|---|---|---|---|")
        for size, items in batches.items():
            for item in items[:2]:  # warm-up
                for runner in runners.values():
                    runner(item)
            times = {name: [] for name in runners}
            for _ in range(args.repeats):
                for name, runner in runners.items():
                    start = time.perf_counter()
                    for item in items:
                        runner(item)
                    times[name].append(time.perf_counter() - start)
            median = {name: statistics.median(values) for name, values in times.items()}
            print(
                f"| {size} | {audio_seconds[size]:.1f} | {median['torch']:.2f} | {median['float32']:.2f} "
                f"| {median['torch'] / median['float32']:.2f}x | {median['int8']:.2f} "
                f"| {median['torch'] / median['int8']:.2f}x |"
            )


if __name__ == "__main__":
    main()
