"""The GPU check script keeps working where CI has no GPU: its reduced version runs on the CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_reduced_runs_every_check_and_prints_one_table():
    result = subprocess.run(
        ["bash", "tests/benchmarks/gpu_check.sh", "--reduced"], cwd=REPO, capture_output=True, text=True,
        env={"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "PYTHON": sys.executable,
             "OMP_NUM_THREADS": "2", "HOME": str(Path.home())},
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and not line.startswith("| check")]
    names = [row.split(" | ")[0] for row in rows]
    assert len(rows) == 4, result.stdout  # reduced: one training size
    assert sum("k-means" in n for n in names) == 2 and "streamed" in names[1]
    assert any("training step" in n for n in names) and any("pipeline" in n for n in names)
    for row in rows:
        assert float(row.split(" | ")[1]) > 0
    device = "CPU" if not torch.cuda.is_available() else torch.cuda.get_device_name(0)
    assert f"device: {device}" in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the full run is what the script does")
def test_gpu_check_refuses_the_full_run_without_a_gpu():
    result = subprocess.run(
        [sys.executable, "tests/benchmarks/gpu_check.py"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0 and "--reduced" in result.stderr
