"""One process vs two (torchrun, gloo) for the same training: seconds per optimizer step.

    python tests/benchmarks/bench_processes.py                 # small encoder, synthetic corpus, 30 steps

The global batch is the same in both runs (8 clips: 1 x 8, or 2 x 4 with gradients all-reduced); one
process gets every core as torch threads, two processes one thread each... of the same cores. The
MTL recipe is used as is (recipes/mtl_finetune.py); timing is the Trainer's ``train_runtime``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(processes: int, steps: int, size: str, corpus: str, output: Path) -> dict:
    per_device = 8 // processes
    launcher = [sys.executable] if processes == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                         "--nproc_per_node", str(processes)]  # fmt: skip
    command = [
        *launcher, str(REPO / "recipes" / "mtl_finetune.py"), "--output_dir", str(output),
        "--dataset", "synthetic", "--data_dir", corpus, "--fold_protocol", "speakers-4", "--validation", "none",
        "--encoder_preset", size, "--freeze_feature_encoder", "False", "--max_duration", "3",
        "--max_steps", str(steps), "--per_device_train_batch_size", str(per_device), "--save_strategy", "no",
        "--eval_strategy", "no", "--load_best_model_at_end", "False", "--report_to", "none", "--disable_tqdm", "True",
    ]  # fmt: skip
    threads = str(max(1, (os.cpu_count() or 2) // processes))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "HF_HUB_OFFLINE": "1"}
    subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    results = json.loads((output / "results.json").read_text())
    return {"seconds": results["train_runtime"], "steps": results["global_step"], "world": results["world_size"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small", choices=["tiny", "small", "base"])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        corpus = str(Path(folder) / "corpus")
        rows = {n: run(n, args.steps, args.size, corpus, Path(folder) / f"run{n}") for n in (1, 2)}
    print(
        f"{args.size} encoder, global batch 8 clips of <= 3 s, {args.steps} optimizer steps, {os.cpu_count()} cores\n"
    )
    print("| processes | per-process batch | s / step | clips / s | speed-up |")
    print("|---|---|---|---|---|")
    for n, row in rows.items():
        per_step = row["seconds"] / row["steps"]
        speedup = (rows[1]["seconds"] / rows[1]["steps"]) / per_step
        print(f"| {row['world']} | {8 // n} | {per_step:.3f} | {8 / per_step:.1f} | {speedup:.2f}x |")


if __name__ == "__main__":
    main()
