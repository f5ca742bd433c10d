"""Run records, the run lock and complete-or-absent checkpoints."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch
from conftest import tiny_model
from safetensors.torch import save_file

from gmp_tl_hf import records
from gmp_tl_hf.arguments import ModelArguments, training_arguments
from gmp_tl_hf.cli import main
from gmp_tl_hf.model_setup import initialise_stage2_head
from gmp_tl_hf.recipes.finetune import base_model_id
from gmp_tl_hf.records import (
    LOCK_NAME,
    RecordMismatch,
    checkpoint_problem,
    claim_step,
    close_step,
    differences,
    newest_complete_checkpoint,
    open_step,
    read_record,
    resolved_settings,
    run_lock,
    settings_defaults,
)


def write_checkpoint(folder, step: int):
    checkpoint = folder / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    save_file({"w": torch.ones(4, 4)}, str(checkpoint / "model.safetensors"))
    torch.save({"state": torch.zeros(3)}, checkpoint / "optimizer.pt")
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return checkpoint


def test_a_truncated_weight_file_or_an_empty_folder_is_not_a_checkpoint(tmp_path, caplog):
    good = write_checkpoint(tmp_path, 10)
    assert checkpoint_problem(good) is None
    truncated = write_checkpoint(tmp_path, 20)
    weights = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(weights[: len(weights) - 7])
    assert checkpoint_problem(truncated) == "model.safetensors is cut short"
    (tmp_path / "checkpoint-30").mkdir()  # disk full before anything was written
    assert checkpoint_problem(tmp_path / "checkpoint-30") == "no trainer_state.json"
    cut_optimizer = write_checkpoint(tmp_path, 25)
    data = (cut_optimizer / "optimizer.pt").read_bytes()
    (cut_optimizer / "optimizer.pt").write_bytes(data[: len(data) // 2])
    assert checkpoint_problem(cut_optimizer) == "optimizer.pt is cut short"

    with caplog.at_level("WARNING"):
        assert newest_complete_checkpoint(tmp_path) == str(good)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "broken-checkpoint-20",
        "broken-checkpoint-25",
        "broken-checkpoint-30",
        "checkpoint-10",
    ]
    assert "checkpoint-30 is incomplete (no trainer_state.json)" in caplog.text


def test_a_step_folder_refuses_other_settings_and_unrecorded_content(tmp_path):
    step = tmp_path / "mtl"
    assert open_step(step, "mtl", {"lr": 1}, {"data": "a"}) is False
    (step / "model.safetensors").write_bytes(b"weights")
    close_step(step, [step / "model.safetensors"])
    assert open_step(step, "mtl", {"lr": 1}, {"data": "a"}) is True  # same: complete, reusable
    before = (step / "record.json").read_bytes()
    with pytest.raises(
        RecordMismatch, match=r"inputs\.data: 'a' -> 'b'; settings\.lr: 1 -> 2\. Nothing was changed.*--overwrite"
    ):
        open_step(step, "mtl", {"lr": 2}, {"data": "b"})
    assert (step / "record.json").read_bytes() == before and (step / "model.safetensors").exists()
    assert open_step(step, "mtl", {"lr": 2}, {"data": "b"}, overwrite=True) is False
    assert not (step / "model.safetensors").exists() and read_record(step)["settings"] == {"lr": 2}

    unrecorded = tmp_path / "by_hand"
    unrecorded.mkdir()
    (unrecorded / "model.safetensors").write_bytes(b"?")
    with pytest.raises(RecordMismatch, match=r"no record\.json"):
        open_step(unrecorded, "mtl", {}, {})


class ThreadRank:
    """A rank of a two-process run, played by a thread: the barrier stands for ``wait_for_everyone``."""

    def __init__(self, index: int, barrier: threading.Barrier):
        self.is_main_process, self.barrier = index == 0, barrier

    def wait_for_everyone(self):
        self.barrier.wait()


def claim_on_two_ranks(step, settings) -> list:
    """What ``claim_step`` returned (or raised) on each of two concurrent ranks."""
    barrier = threading.Barrier(2, timeout=20)  # a rank left waiting breaks the barrier: the test fails
    outcomes: list = [None, None]

    def rank(index):
        try:
            outcomes[index] = claim_step(ThreadRank(index, barrier), step, "stage1", settings, {"data": "a"})
        except Exception as error:  # the outcome, raised or returned, is what the test compares
            outcomes[index] = error

    threads = [threading.Thread(target=rank, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
        time.sleep(0.1)  # rank 1 looks at the folder while rank 0 may be writing to it
    for thread in threads:
        thread.join()
    return outcomes


def test_every_rank_claims_a_step_alike_while_the_main_one_writes_slowly(tmp_path, monkeypatch):
    """CI once saw rank 1 read the folder while rank 0 was writing ``record.json.tmp`` and refuse it as
    unrecorded content: every rank now checks before any rank writes."""
    write_json = records._write_json

    def slow_write(path, value):  # the temporary file lingers, as on a busy disk
        path.with_name(path.name + ".tmp").write_text("{")
        time.sleep(0.5)
        write_json(path, value)

    monkeypatch.setattr(records, "_write_json", slow_write)
    step = tmp_path / "stage1"
    step.mkdir()
    (step / "run.log").write_text("the main process's log, made first\n")
    assert claim_on_two_ranks(step, {"lr": 1}) == [False, False]
    assert read_record(step)["status"] == "running" and not list(step.glob("*.tmp"))
    (step / "model.safetensors").write_bytes(b"weights")
    close_step(step, [step / "model.safetensors"])
    assert claim_on_two_ranks(step, {"lr": 1}) == [True, True]  # complete: both reuse it
    refused = claim_on_two_ranks(step, {"lr": 2})  # other settings: both refuse, neither waits for the other
    assert all(isinstance(outcome, RecordMismatch) and "settings.lr: 1 -> 2" in str(outcome) for outcome in refused)
    assert (step / "model.safetensors").exists()


def test_differences_name_every_changed_leaf():
    old = {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    new = {"a": {"b": 1, "c": [1, 3]}, "e": "y"}
    assert differences(old, new) == ["a.c: [1, 2] -> [1, 3]", "d: 'x' -> '<absent>'", "e: '<absent>' -> 'y'"]
    # a key the old record lacks stands for its default: equal to it, no difference; other, named as a change
    defaults = {"a": {"f": False}, "e": "y"}
    assert differences({"a": {}}, {"a": {"f": False}}, defaults) == []
    assert differences({"a": {}}, {"a": {"f": True}}, defaults) == ["a.f: False -> True"]
    assert differences(old, new, defaults) == ["a.c: [1, 2] -> [1, 3]", "d: 'x' -> '<absent>'"]
    assert differences({"a": {"f": True}}, {"a": {}}, defaults) == ["a.f: True -> '<absent>'"]  # dropped: a change


def test_settings_defaults_mirror_the_recorded_settings():
    model_args, training_args = ModelArguments(), training_arguments("out")
    defaults = settings_defaults(model_args, training_args)
    recorded = resolved_settings(model_args, training_args)
    assert defaults["ModelArguments"] == recorded["ModelArguments"]  # every field at its default
    assert defaults["ModelArguments"]["refit_emotion_head"] is False
    # transformers' own defaults, not the recipe's (what an option added by a transformers upgrade falls back to)
    assert defaults["TrainingArguments"]["load_best_model_at_end"] is False
    assert recorded["TrainingArguments"]["load_best_model_at_end"] is True


def test_run_lock_refuses_a_live_holder_and_takes_over_a_stale_one(tmp_path, caplog):
    with run_lock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
        with (
            pytest.raises(RuntimeError, match=rf"in use by process {os.getpid()} .*delete .*\.lock"),
            run_lock(tmp_path),
        ):
            pass
    assert not (tmp_path / LOCK_NAME).exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = {"pid": int(dead.stdout), "host": socket.gethostname(), "started": "earlier"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(lock))
    with caplog.at_level("WARNING"), run_lock(tmp_path):
        pass
    assert f"stale lock of process {lock['pid']}" in caplog.text


def test_stage2_head_init_is_explicit():
    loaded = tiny_model(emotion_head="am_softmax")
    kept = loaded.classifier.weight.detach().clone()
    initialise_stage2_head(loaded, "from_stage1", seed=0)
    assert torch.equal(loaded.classifier.weight, kept)
    initialise_stage2_head(loaded, "fresh", seed=0)
    fresh = loaded.classifier.weight.detach().clone()
    assert not torch.equal(fresh, kept)
    initialise_stage2_head(loaded, "fresh", seed=0)
    assert torch.equal(loaded.classifier.weight, fresh)  # seeded
    with pytest.raises(ValueError, match="head_init must be one of"):
        initialise_stage2_head(loaded, "random", seed=0)


def test_base_model_is_a_hub_id_or_absent(tmp_path):
    assert base_model_id("facebook/hubert-base-ls960") == "facebook/hubert-base-ls960"
    (tmp_path / "random_init").mkdir()
    assert base_model_id(str(tmp_path / "random_init")) is None
    for name, start in (("stage1", "facebook/hubert-large-ll60k"), ("stage2", str(tmp_path / "stage1"))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({"model": {"model_name_or_path": start}}))
    assert base_model_id(str(tmp_path / "stage2")) == "facebook/hubert-large-ll60k"


def test_the_cli_answers_a_refusal_in_one_line(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    (tmp_path / "c.yaml").write_text("data:\n  dataset: synthetic\n")
    with pytest.raises(SystemExit) as stop:
        main(["cv", "--config", str(tmp_path / "c.yaml"), "--output_dir", str(tmp_path / "run")])
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("gmp-tl cv: error: ") and "is in use by process" in error and "\n" not in error
    (tmp_path / "twice.yaml").write_text("data:\n  dataset: synthetic\n  dataset: emodb\n")
    with pytest.raises(SystemExit):
        main(["cv", "--config", str(tmp_path / "twice.yaml"), "--output_dir", str(tmp_path / "other")])
    assert "key 'dataset' is given twice" in capsys.readouterr().err
