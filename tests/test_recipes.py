"""The recipes end to end on a tiny synthetic corpus: CV chain, resume, 2 processes, Hub push and reload."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO_ROOT, crash_after_the_first_checkpoint, tiny_model
from datasets import load_from_disk
from hub_server import HubServer
from safetensors.torch import load_file
from sklearn.metrics import balanced_accuracy_score
from transformers import Trainer, TrainingArguments, pipeline

from gmp_tl_hf import default_feature_extractor
from gmp_tl_hf.arguments import ConfigError, DataArguments, ModelArguments, PretrainArguments, parse_args
from gmp_tl_hf.baseline import baseline_scores, regression
from gmp_tl_hf.cross_validation import apply_overrides, run_cv
from gmp_tl_hf.data.collator import SERCollator
from gmp_tl_hf.data.splits import fold_split
from gmp_tl_hf.fold_data import load_data, prepare_splits
from gmp_tl_hf.model_setup import (
    EMOTION_REFIT_CS,
    gender_head_inputs,
    gender_rows,
    load_gmp_model,
    refit_emotion_head,
)
from gmp_tl_hf.recipes.finetune import run_finetune
from gmp_tl_hf.records import LOCK_NAME, RecordMismatch, run_lock

TINY_DATA = {
    "dataset": "synthetic",
    "synthetic_speakers_per_gender": 2,
    "synthetic_utterances_per_emotion": 3,
    "fold_protocol": "speakers-2",
    "validation": "random",
    "validation_size": 0.25,
    "max_duration": 1.5,
}
TINY_TRAINING = {
    "max_steps": 4,
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 8,
    "eval_strategy": "steps",
    "save_strategy": "steps",
    "eval_steps": 2,
    "save_steps": 2,
    "logging_steps": 2,
    "learning_rate": 1e-3,
    "warmup_steps": 0,
    "disable_tqdm": True,
    "seed": 7,
}


def tiny_config(corpus_dir: str) -> dict:
    return {
        "data": {**TINY_DATA, "data_dir": corpus_dir},
        "model": {"encoder_preset": "tiny", "freeze_feature_encoder": False, "layerdrop": 0.0},
        "gmp": {"cluster_sizes": [4, 8], "kmeans_max_iter": 5},
        "training": TINY_TRAINING,
    }


def test_config_file_and_flags(tmp_path):
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump({"dataset": "iemocap", "fold": 2, "learning_rate": 1e-4, "pooling": "attentive"})
    )
    data, model, training = parse_args(
        (DataArguments, ModelArguments, TrainingArguments),
        ["--config", str(tmp_path / "c.yaml"), "--fold", "3", "--output_dir", str(tmp_path)],
    )
    assert (data.dataset, data.fold, data.fold_protocol, model.pooling, training.learning_rate) == (
        "iemocap",
        3,
        "loso",
        "attentive",
        1e-4,
    )
    (tmp_path / "bad.yaml").write_text("no_such_option: 1\n")
    with pytest.raises(ValueError, match=r"unknown argument\(s\) in the config: \['no_such_option'\]"):
        parse_args((DataArguments,), ["--config", str(tmp_path / "bad.yaml")])


def test_overrides_parse_numbers_like_yaml_1_2():
    config = apply_overrides({"training": {"seed": 1}}, ["training.learning_rate=1e-3", "gmp.cluster_sizes=[50, 100]"])
    assert config == {"training": {"seed": 1, "learning_rate": 0.001}, "gmp": {"cluster_sizes": [50, 100]}}
    with pytest.raises(ValueError, match=r"section\.key=value"):
        apply_overrides({}, ["learning_rate=1e-3"])


def test_cv_chain_writes_models_reports_and_skips_finished_folds(corpus_dir, tmp_path):
    summary = run_cv(tiny_config(corpus_dir), tmp_path / "cv", "gmp-tl", folds=[0])
    fold = tmp_path / "cv" / "fold0"
    for stage in ("mtl", "stage1", "stage2"):
        results = json.loads((fold / stage / "results.json").read_text())
        assert 0 <= results["test"]["war"] <= 1 and results["global_step"] == 4
        assert {"model.safetensors", "preprocessor_config.json", "modeling_hubert_gmp.py", "README.md"} <= {
            p.name for p in (fold / stage).iterdir()
        }
    stage1 = json.loads((fold / "stage1" / "config.json").read_text())
    stage2 = json.loads((fold / "stage2" / "config.json").read_text())
    gmp = json.loads((fold / "gmp" / "gmp.json").read_text())
    assert stage1["gmp_cluster_sizes"] == gmp["num_classes"] == [4, 8] and gmp["layer"] == 2
    assert stage2["gmp_cluster_sizes"] == [] and stage2["emotion_head"] == "am_softmax"
    assert (fold / "stage1" / "quantizer" / "gmp_quantizer.json").is_file()
    card = (fold / "stage2" / "README.md").read_text()
    assert "pipeline_tag: audio-classification" in card and "model-index" in card and "name: UAR" in card
    assert "not a measurement of this checkpoint" in card
    for name in ("cv_results.json", "cv_results.md", "confusion.png"):
        assert (tmp_path / "cv" / name).is_file()
    assert set(summary["stages"]) == {"mtl", "stage1", "stage2"}
    # the hand-made-features baseline on the same fold, emotion and gender, beside the stages in both tables
    baseline = summary["baseline"]
    assert set(baseline["per_fold"]) == {0} and 0 <= baseline["war_mean"] <= 1
    assert 0 <= baseline["per_fold"][0]["gender_accuracy"] <= 1 and "gender_accuracy_mean" in baseline
    table = (tmp_path / "cv" / "cv_results.md").read_text()
    assert f"| {baseline['name']} (baseline) | {100 * baseline['per_fold'][0]['war']:.1f} / " in table
    assert json.loads((tmp_path / "cv" / "cv_results.json").read_text())["baseline"]["name"] == baseline["name"]
    # all three stages started from the same random encoder
    init = load_file(str(tmp_path / "cv" / "random_init" / "model.safetensors"))
    assert init  # a plain HubertModel checkpoint
    # rerun: every step is found finished and nothing is retrained
    stamp = (fold / "stage2" / "model.safetensors").stat().st_mtime_ns
    again = run_cv(tiny_config(corpus_dir), tmp_path / "cv", "gmp-tl", folds=[0])
    assert (fold / "stage2" / "model.safetensors").stat().st_mtime_ns == stamp
    assert again["stages"]["stage2"]["war_mean"] == summary["stages"]["stage2"]["war_mean"]
    assert again["baseline"] == baseline  # fitted anew, deterministically
    # the recorded compute time survives the rerun; the wall time covers only the rerun
    assert again["compute_time_s"] == summary["compute_time_s"] > again["wall_time_s"]

    # records: each step folder says what made it
    record = json.loads((fold / "stage2" / "record.json").read_text())
    assert record["status"] == "complete" and record["code"]["package"] and record["output"].startswith("sha256:")
    assert record["settings"]["ModelArguments"]["head_init"] == "from_stage1"
    assert record["inputs"]["source"] == json.loads((fold / "stage1" / "record.json").read_text())["output"]
    assert "base_model:" not in card  # started from a random encoder, not a Hub model


def snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and "checkpoint-" not in str(p)}


def test_a_rerun_with_other_settings_refuses_then_overwrite_recomputes_what_changed(corpus_dir, tmp_path):
    run_cv(tiny_config(corpus_dir), tmp_path / "cv", "gmp-tl", folds=[0])
    fold = tmp_path / "cv" / "fold0"
    # a folder made before an option existed: its record lacks the field, which counts as the default
    for step in ("mtl", "stage1", "stage2"):
        path = fold / step / "record.json"
        record = json.loads(path.read_text())
        assert record["settings"]["ModelArguments"].pop("refit_emotion_head") is False
        path.write_text(json.dumps(record))
    stamp = (fold / "stage2" / "model.safetensors").stat().st_mtime_ns
    run_cv(tiny_config(corpus_dir), tmp_path / "cv", "gmp-tl", folds=[0])  # the default: reused, not retrained
    assert (fold / "stage2" / "model.safetensors").stat().st_mtime_ns == stamp
    refit = tiny_config(corpus_dir)
    refit["model"] = {**refit["model"], "refit_emotion_head": True}
    with pytest.raises(RecordMismatch, match=r"fold0/mtl: ModelArguments\.refit_emotion_head: False -> True"):
        run_cv(refit, tmp_path / "cv", "gmp-tl", folds=[0])
    before = snapshot(tmp_path / "cv")
    changed = tiny_config(corpus_dir)
    changed["training"] = {**changed["training"], "learning_rate": 2e-3}
    with pytest.raises(RecordMismatch, match=r"fold0/mtl: TrainingArguments\.learning_rate: 0\.001 -> 0\.002"):
        run_cv(changed, tmp_path / "cv", "gmp-tl", folds=[0])
    assert snapshot(tmp_path / "cv") == before  # nothing touched, config.yaml included
    only_stage2 = tiny_config(corpus_dir)
    only_stage2["stage2"] = {"head_init": "fresh"}
    with pytest.raises(RecordMismatch, match=r"fold0/stage2: ModelArguments\.head_init"):
        run_cv(only_stage2, tmp_path / "cv", "gmp-tl", folds=[0])
    other_tol = tiny_config(corpus_dir)
    other_tol["gmp"] = {**other_tol["gmp"], "kmeans_tol": 1e-2}  # an engine setting is a recorded setting too
    with pytest.raises(RecordMismatch, match=r"fold0/gmp: GMPArguments\.kmeans_tol: 0\.001 -> 0\.01"):
        run_cv(other_tol, tmp_path / "cv", "gmp-tl", folds=[0])
    assert snapshot(tmp_path / "cv") == before
    run_cv(only_stage2, tmp_path / "cv", "gmp-tl", folds=[0], overwrite=True)
    after = snapshot(tmp_path / "cv")
    for step in ("mtl", "gmp", "stage1"):  # upstream of the change: untouched
        assert all(after[p] == data for p, data in before.items() if f"/{step}/" in str(p))
    assert after[fold / "stage2" / "model.safetensors"] != before[fold / "stage2" / "model.safetensors"]
    assert json.loads((fold / "stage2" / "results.json").read_text())["model"]["head_init"] == "fresh"
    run_cv(changed, tmp_path / "cv", "gmp-tl", folds=[0], overwrite=True)  # the first step: all recomputed
    assert snapshot(tmp_path / "cv")[fold / "mtl" / "model.safetensors"] != before[fold / "mtl" / "model.safetensors"]
    assert "learning_rate: 0.002" in (tmp_path / "cv" / "config.yaml").read_text()


@pytest.mark.parametrize(
    ("pooling", "family"), [("mean", "hubert"), ("attentive", "hubert"), ("mean", "wavlm"), ("attentive", "wav2vec2")]
)
def test_recipe_models_answer_consistently(corpus_dir, tmp_path, pooling, family):
    """Stage-1 (linear head) and stage-2 (AM-Softmax) models made by the recipes, with each pooling and
    encoder family: a whole-clip window repeats the utterance answer, and the gender head, refit on the
    final encoder, answers."""
    config = tiny_config(corpus_dir)
    config["model"].update(pooling=pooling, encoder_family=family)
    run_cv(config, tmp_path / "cv", "gmp-tl", folds=[0])
    saved = json.loads((tmp_path / "cv" / "fold0" / "stage2" / "config.json").read_text())
    assert saved["model_type"] == f"{family}_gmp"
    clip = str(sorted(Path(corpus_dir).rglob("*.wav"))[0])
    for stage in ("stage1", "stage2"):
        classify = pipeline(
            "audio-classification", model=str(tmp_path / "cv" / "fold0" / stage), trust_remote_code=True
        )
        assert classify.model.config.gender_head_trained and not classify.model.config.gender_probe
        # no gender task and no probe in these stages: the head is the end-of-stage refit, so the validation
        # logs during training carry no gender accuracy (it would describe an untrained head)
        state = sorted((tmp_path / "cv" / "fold0" / stage).glob("checkpoint-*/trainer_state.json"))[-1]
        evaluations = [log for log in json.loads(state.read_text())["log_history"] if "eval_uar" in log]
        assert evaluations and not any("eval_gender_accuracy" in log for log in evaluations)
        result = classify(clip, return_timeline=True, timeline_window=60.0, return_gender=True, top_k=4)
        utterance = {item["label"]: item["score"] for item in result["emotion"]}
        (window,) = result["timeline"]
        assert window["label"] == result["emotion"][0]["label"]
        assert all(abs(window["scores"][label] - score) < 1e-4 for label, score in utterance.items())
        assert {item["label"] for item in result["gender"]} == {"female", "male"}
        assert classify.model.config.gender_spectral_features and classify.model.spectral_gender_weight.any()
        refit = json.loads((tmp_path / "cv" / "fold0" / stage / "results.json").read_text())["gender_head_refit"]
        assert refit["splits"] == ["train", "validation"]  # every speaker outside the test fold
        splits = prepare_splits(DataArguments(**config["data"]))
        rows = [row for name in refit["splits"] for row in splits[name].select_columns(["audio", "gender"])]
        assert refit["clips"] == len(rows)
        batch = SERCollator(classify.feature_extractor, classify.model.config)(rows)
        with torch.no_grad():
            answers = classify.model(batch["input_values"], attention_mask=batch["attention_mask"]).gender_logits
        # the saved model answers the clips it was refit on as the logistic regression did
        assert (answers.argmax(-1) == batch["gender_labels"]).float().mean().item() == refit["train_accuracy"]
        results = json.loads((tmp_path / "cv" / "fold0" / stage / "results.json").read_text())
        assert results["validation"]["gender_accuracy"] is None and results["test"]["gender_accuracy"] is not None


@pytest.mark.parametrize("emotion_input", ["projected", "all_layers"])
def test_the_emotion_refit_makes_each_stages_head_the_regression_and_the_answers_agree(
    corpus_dir, tmp_path, emotion_input
):
    """With statistics pooling and ``refit_emotion_head``, every stage ends with the emotion head the logistic
    regression fitted on its final encoder (stage 2's AM-Softmax head becomes linear), whichever frames the
    pooling reads: the saved model answers the refit clips as the regression did, a whole-clip timeline window
    repeats the utterance answer, the validation clips (seen by the refit) get no emotion score, and the model
    card says so."""
    config = tiny_config(corpus_dir)
    config["model"].update(pooling="statistics", refit_emotion_head=True, emotion_input=emotion_input)
    run_cv(config, tmp_path / "cv", "gmp-tl", folds=[0])
    splits = prepare_splits(DataArguments(**config["data"]))
    clip = str(sorted(Path(corpus_dir).rglob("*.wav"))[0])
    for stage in ("mtl", "stage1", "stage2"):
        folder = tmp_path / "cv" / "fold0" / stage
        results = json.loads((folder / "results.json").read_text())
        fit = results["emotion_head_refit"]
        assert fit["splits"] == ["train", "validation"] and fit["c"] in EMOTION_REFIT_CS
        assert fit["cross_validation_uar"][str(fit["c"])] == max(fit["cross_validation_uar"].values())
        assert fit["replaced_head"] == ("am_softmax" if stage == "stage2" else "linear")
        assert "validation" not in results and 0 <= results["test"]["uar"] <= 1
        # the trained head's test answer, recorded before the refit replaced it: the best checkpoint's
        trained = load_gmp_model(results["best_checkpoint"]).eval()
        test_rows = list(splits["test"].select_columns(["audio", "emotion", "gender"]))
        test_batch = SERCollator(default_feature_extractor(), trained.config)(test_rows)
        with torch.no_grad():
            trained_logits = trained(test_batch["input_values"], attention_mask=test_batch["attention_mask"]).logits
        before = balanced_accuracy_score(test_batch["labels"], trained_logits.argmax(-1))
        assert fit["test_before_refit"]["uar"] == pytest.approx(before)
        classify = pipeline("audio-classification", model=str(folder), trust_remote_code=True)
        assert classify.model.config.emotion_head == "linear" and classify.model.config.pooling == "statistics"
        assert classify.model.config.emotion_input == emotion_input
        rows = [row for name in fit["splits"] for row in splits[name].select_columns(["audio", "emotion", "gender"])]
        assert fit["clips"] == len(rows)
        batch = SERCollator(classify.feature_extractor, classify.model.config)(rows)
        with torch.no_grad():
            logits = classify.model(batch["input_values"], attention_mask=batch["attention_mask"]).logits
        assert balanced_accuracy_score(batch["labels"], logits.argmax(-1)) == pytest.approx(fit["train_uar"])
        result = classify(clip, return_timeline=True, timeline_window=60.0, top_k=4)
        (window,) = result["timeline"]
        assert window["label"] == result["emotion"][0]["label"]
        assert all(abs(window["scores"][item["label"]] - item["score"]) < 1e-4 for item in result["emotion"])
        card = (folder / "README.md").read_text()
        assert "refit by logistic regression on the final encoder" in card
        frames = "every layer" if emotion_input == "all_layers" else "the projected last layer"
        assert f"statistics pooling of {frames}" in card


def test_cv_run_interrupted_mid_training_resumes_from_the_checkpoint(corpus_dir, tmp_path, monkeypatch):
    original = Trainer._save_checkpoint
    calls = []

    def crash_in_stage1(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if "stage1" in self.args.output_dir:
            raise KeyboardInterrupt("simulated crash in stage 1")

    monkeypatch.setattr(Trainer, "_save_checkpoint", crash_in_stage1)
    with pytest.raises(KeyboardInterrupt):
        run_cv(tiny_config(corpus_dir), tmp_path / "cv", "gmp-tl", folds=[0])
    monkeypatch.setattr(Trainer, "_save_checkpoint", original)
    fold = tmp_path / "cv" / "fold0"
    assert (fold / "mtl" / "results.json").is_file() and not (fold / "stage1" / "results.json").exists()
    mtl_stamp = (fold / "mtl" / "model.safetensors").stat().st_mtime_ns
    original_train = Trainer.train

    def record_resume(self, resume_from_checkpoint=None, **kwargs):
        calls.append((self.args.output_dir, resume_from_checkpoint))
        return original_train(self, resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    monkeypatch.setattr(Trainer, "train", record_resume)
    summary = run_cv(tiny_config(corpus_dir), tmp_path / "cv", "gmp-tl", folds=[0])
    assert calls[0] == (str(fold / "stage1"), str(fold / "stage1" / "checkpoint-2"))  # stage 1 continued
    assert calls[1] == (str(fold / "stage2"), None)  # stage 2 started afresh
    assert (fold / "mtl" / "model.safetensors").stat().st_mtime_ns == mtl_stamp  # the finished MTL step was kept
    assert json.loads((fold / "stage1" / "results.json").read_text())["global_step"] == 4
    assert "stage2" in summary["stages"]


def _mtl_args(corpus_dir, output_dir, **training):
    data = DataArguments(**{**TINY_DATA, "data_dir": corpus_dir})
    model = ModelArguments(
        encoder_preset="tiny", freeze_feature_encoder=False, layerdrop=0.0, model_name_or_path=str(output_dir)
    )
    values = {**TINY_TRAINING, "max_steps": 6, "save_steps": 3, "eval_strategy": "no", "load_best_model_at_end": False}
    values.update(training)
    args = TrainingArguments(output_dir=str(output_dir), **values, report_to="none", remove_unused_columns=False,
                             train_sampling_strategy="group_by_length", length_column_name="num_samples")  # fmt: skip
    return data, model, args


def test_resume_after_a_crash_matches_an_uninterrupted_run(corpus_dir, tmp_path):
    reference = run_finetune("mtl", *_mtl_args(corpus_dir, tmp_path / "full"))
    with crash_after_the_first_checkpoint():
        run_finetune("mtl", *_mtl_args(corpus_dir, tmp_path / "crash"))
    assert (tmp_path / "crash" / "checkpoint-3").is_dir() and not (tmp_path / "crash" / "results.json").exists()
    resumed = run_finetune("mtl", *_mtl_args(corpus_dir, tmp_path / "crash", resume_from_checkpoint="last"))
    assert resumed["global_step"] == reference["global_step"] == 6
    full = load_file(str(tmp_path / "full" / "model.safetensors"))
    after = load_file(str(tmp_path / "crash" / "model.safetensors"))
    for name, tensor in full.items():
        torch.testing.assert_close(after[name], tensor, atol=1e-6, rtol=1e-5, msg=name)
    assert resumed["test"]["confusion_matrix"] == reference["test"]["confusion_matrix"]


def torchrun(script: str, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(REPO_ROOT / "recipes" / script), *args]  # fmt: skip
    return subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )


def test_two_processes_extract_gmp_and_train_stage1(corpus_dir, tmp_path):
    """torchrun --nproc_per_node 2 (gloo on CPU): labels attached by both ranks, both ranks train stage 1
    on their half of each batch, one model is written."""
    mtl_dir = tmp_path / "mtl"
    run_finetune("mtl", *_mtl_args(corpus_dir, mtl_dir, max_steps=2))
    data_flags = [f"--{key}={value}" for key, value in {**TINY_DATA, "data_dir": corpus_dir}.items()]
    done = torchrun(
        "extract_gmp.py", "--model_name_or_path", str(mtl_dir), "--output_dir", str(tmp_path / "gmp"),
        "--cluster_sizes", "4", "8", "--batch_seconds", "4", *data_flags,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    gmp = json.loads((tmp_path / "gmp" / "gmp.json").read_text())
    assert gmp["world_size"] == 2 and gmp["num_classes"] == [4, 8]
    assert {p.name[:2] for p in (tmp_path / "gmp" / "features").glob("r*.json")} == {"r0", "r1"}
    train = load_from_disk(str(tmp_path / "gmp" / "train"))
    assert all(len(labels) > 0 for labels in train["gmp_labels"])
    done = torchrun(
        "stage1_gmp.py",
        "--output_dir", str(tmp_path / "stage1"), "--gmp_dir", str(tmp_path / "gmp"),
        "--model_name_or_path", str(mtl_dir / "random_init"), "--freeze_feature_encoder", "False",
        "--ddp_backend", "gloo", "--report_to", "none", "--disable_tqdm", "True",
        "--num_train_epochs", "2", "--per_device_train_batch_size", "4", "--eval_strategy", "epoch",
        "--save_strategy", "epoch", "--learning_rate", "1e-3", "--seed", "7", *data_flags,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert "rank 0/2: trained" in done.stderr and "rank 1/2: trained" in done.stderr
    results = json.loads((tmp_path / "stage1" / "results.json").read_text())
    assert results["world_size"] == 2
    train_clips = int(done.stderr.split("rank 0/2: trained ")[1].split(" optimizer steps on ")[1].split()[0])
    batches = -(-train_clips // 4)  # batches of 4, dealt to the 2 ranks
    assert results["global_step"] == 2 * -(-batches // 2)  # 2 epochs, half the batches per rank
    assert (tmp_path / "stage1" / "model.safetensors").is_file()
    assert list((tmp_path / "stage1").glob("checkpoint-*"))


def test_push_to_hub_and_load_back_in_a_fresh_process(corpus_dir, tmp_path):
    with HubServer() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_test_token",
               "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_DISABLE_XET": "1"}  # fmt: skip
        command = [
            sys.executable, str(REPO_ROOT / "recipes" / "mtl_finetune.py"), "--output_dir", str(tmp_path / "run"),
            "--encoder_preset", "tiny", "--freeze_feature_encoder", "False", "--report_to", "none",
            "--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "False",
            "--per_device_train_batch_size", "4", "--disable_tqdm", "True",
            "--push_to_hub", "--hub_model_id", "user/gmp-tl-tiny",
            *[f"--{key}={value}" for key, value in {**TINY_DATA, "data_dir": corpus_dir}.items()],
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 0, done.stderr[-4000:]
        files = set(hub.state.repos["user/gmp-tl-tiny"]["files"])
        expected = {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "results.json"}
        expected |= {
            "modeling_hubert_gmp.py",
            "configuration_hubert_gmp.py",
            "pipeline_hubert_gmp.py",
            "audio_io.py",
            "spectral.py",
        }
        assert expected <= files
        assert not any(name.startswith(("checkpoint-", "random_init/")) for name in files)
        card = hub.state.repos["user/gmp-tl-tiny"]["files"]["README.md"].decode()
        assert "name: gmp-tl-tiny" in card and 'pipeline("audio-classification", model="user/gmp-tl-tiny"' in card

        script = textwrap.dedent(
            """
            import json, sys
            import numpy as np
            from transformers import AutoModelForAudioClassification, pipeline
            model = AutoModelForAudioClassification.from_pretrained("user/gmp-tl-tiny", trust_remote_code=True)
            classify = pipeline("audio-classification", model="user/gmp-tl-tiny", trust_remote_code=True)
            wave = np.sin(2 * np.pi * 180 * np.arange(24000) / 24000).astype(np.float32)
            result = classify({"array": wave, "sampling_rate": 24000}, return_gender=True)
            print(json.dumps({"model": type(model).__name__, "result": result, "imported": "gmp_tl_hf" in sys.modules}))
            """
        )
        loaded = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
        )
        assert loaded.returncode == 0, loaded.stderr[-4000:]
        report = json.loads(loaded.stdout.strip().splitlines()[-1])
        assert report["model"] == "HubertForGMPEmotion" and report["imported"] is False
        assert {item["label"] for item in report["result"]["emotion"]} == {"neutral", "happy", "angry", "sad"}


def test_cli_help():
    done = subprocess.run([sys.executable, "-m", "gmp_tl_hf.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "gmp-tl demo" in done.stdout
    done = subprocess.run([sys.executable, "-m", "gmp_tl_hf.cli", "stage1", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--gmp_dir" in done.stdout and "--fold_protocol" in done.stdout


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "gmp_tl_hf.cli", "demo", "--output_dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=1800, cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert "| stage2 |" in done.stdout and "pipeline('audio-classification') on held-out clips:" in done.stdout
    summary = json.loads((tmp_path / "demo" / "cv_results.json").read_text())
    assert summary["stages"]["stage2"]["war_mean"] > 0.25  # better than chance on 4 balanced classes


def test_configs_label_paper_only_what_the_abstract_states():
    """The abstract states the encoder family, the multi-task model, the pseudo-labels, AM-Softmax in
    stage 2 and the corpus; every other value in a config must be labelled ours."""
    stated = {"dataset", "model_name_or_path", "emotion_head", "gender_loss_weight", "cluster_sizes"}
    for path in sorted((REPO_ROOT / "recipes" / "configs").glob("*.yaml")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            value, _, comment = line.partition("#")
            if "paper" in comment and ":" in value:
                key = value.split(":")[0].strip()
                assert key in stated, f"{path.name}:{number} labels {key!r} as the paper's"
                if key in ("gender_loss_weight", "cluster_sizes", "model_name_or_path"):
                    assert "ours" in comment, f"{path.name}:{number}: the value itself is ours"


def test_a_study_job_waits_for_the_encoder_another_job_is_pre_training(tmp_path, monkeypatch, caplog):
    """Arms started as parallel jobs share one pre-trained encoder: the job that finds its folder locked by a
    live process waits (one log line) and then runs, instead of stopping."""
    sys.path.insert(0, str(REPO_ROOT / "recipes" / "studies"))
    import study

    folder = tmp_path / "pretrain" / "small"
    folder.mkdir(parents=True)
    other_job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    lock = {"pid": other_job.pid, "host": socket.gethostname(), "started": "now"}
    (folder / LOCK_NAME).write_text(json.dumps(lock))
    ran = []

    def pretrain_main(argv):
        with run_lock(folder):
            ran.append(argv)

    monkeypatch.setattr(study.pretrain, "main", pretrain_main)
    threading.Timer(0.5, (folder / LOCK_NAME).unlink).start()  # the other job finishes
    try:
        with caplog.at_level(logging.INFO, logger="gmp_tl_hf.study"):
            study.pretrain_when_free(["--output_dir", str(folder)], poll_seconds=0.1)
    finally:
        other_job.kill()
    assert ran == [["--output_dir", str(folder)]] and not (folder / LOCK_NAME).exists()
    waits = [record.message for record in caplog.records if "waits for it" in record.message]
    assert len(waits) == 1 and f"in use by process {other_job.pid}" in waits[0]


def test_the_study_table_compares_each_ablation_with_the_same_model_of_gmp_tl(tmp_path):
    """An ablation that trains its own MTL model and stage 1 gets rows for them, each paired with the same
    model of gmp-tl on the same seeds and folds only (gmp-tl's other seeds do not enter the pair)."""
    sys.path.insert(0, str(REPO_ROOT / "recipes" / "studies"))
    import study

    def run(arm: str, stage: str, seed: int, uars: list[float]) -> dict:
        folds = {fold: {"uar": uar, "war": uar, "gender_accuracy": 0.9} for fold, uar in enumerate(uars)}
        mean = sum(uars) / len(uars)
        return {"per_fold": folds, "seed": seed, "arm": arm, "stage": stage, "uar_mean": mean, "uar_std": 0.0,
                "war_mean": mean, "war_std": 0.0, "gender_accuracy_mean": 0.9}  # fmt: skip

    results = {
        "mtl": [run("gmp-tl", "mtl", 1, [0.1, 0.1]), run("gmp-tl", "mtl", 2, [0.2, 0.3])],
        "gmp-tl": [run("gmp-tl", "stage2", 1, [0.9, 0.9]), run("gmp-tl", "stage2", 2, [0.4, 0.5])],
        "no-gender mtl": [run("no-gender", "mtl", 2, [0.3, 0.3])],
        "no-gender": [run("no-gender", "stage2", 2, [0.4, 0.6])],
    }
    timings = {"gmp-tl": [600.0, 600.0], "no-gender": [300.0]}
    table = study.write_summary([tmp_path], results, timings, [], {}, echo=False)
    assert table["wins"] == {"no-gender mtl vs mtl": "1 of 2 (1 tied)", "no-gender vs gmp-tl": "1 of 2 (1 tied)"}
    assert table["paired_uar"]["no-gender vs gmp-tl"] == pytest.approx([0.5, 0.45])  # seed 2 only
    assert table["sign_test_p"]["no-gender vs gmp-tl"] == 1.0  # one untied pair says nothing
    assert table["arms"]["no-gender mtl"]["compute_time_s"] == 300.0  # its own chain's, not gmp-tl's
    assert "| no-gender mtl | 1 |" in (tmp_path / "study_results.md").read_text()
    assert "(inside no-gender)" in (tmp_path / "study_results.md").read_text()


def test_the_sign_test_matches_the_binomial_tails():
    """Exact two-sided sign test, ties dropped: 9 of 10 is p = 22/1024; a balanced split is p = 1."""
    sys.path.insert(0, str(REPO_ROOT / "recipes" / "studies"))
    import study

    assert study.sign_test(9, 1) == pytest.approx(22 / 1024)
    assert study.sign_test(1, 9) == study.sign_test(9, 1)
    assert study.sign_test(5, 5) == 1.0
    assert study.sign_test(6, 0) == pytest.approx(2 / 64)
    assert study.sign_test(0, 0) == 1.0
    assert study.p_text(study.sign_test(20, 5)) == "< 0.01" and study.p_text(0.3) == "= 0.30"


def test_the_leave_one_speaker_out_refit_rules_choose_on_speakers_not_clips():
    """gender_parts.py's candidate refit rules: C and the input half chosen by leave-one-speaker-out accuracy.
    The encoder half here tells the training speakers apart perfectly (one value per speaker, like an encoder
    that has learnt them) but not new ones; the spectral half carries gender for every speaker."""
    sys.path.insert(0, str(REPO_ROOT / "recipes" / "studies"))
    import gender_parts

    rng = np.random.default_rng(0)
    speakers = np.repeat(np.arange(8), 20)
    genders = speakers % 2
    spectral = genders[:, None] * 1.0 + rng.normal(0, 0.6, (160, 3))
    encoder = np.eye(8)[speakers] * (2 * genders[:, None] - 1) + rng.normal(0, 0.05, (160, 8))
    features = np.concatenate([encoder, spectral], axis=1)
    test_genders = np.repeat([0, 1], 20)
    test = np.concatenate([rng.normal(0, 1, (40, 8)), test_genders[:, None] + rng.normal(0, 0.6, (40, 3))], axis=1)
    parts = {"encoder": slice(0, 8), "spectral": slice(8, None), "both": slice(None)}
    rules, chosen = gender_parts.speaker_cv_rules(features, genders, speakers, test, test_genders, parts)
    assert chosen.split("pick ")[1].startswith("spectral")  # a held-out speaker's encoder row is all noise
    assert rules["speaker_cv_pick"] == gender_parts.refit_accuracy(
        spectral, genders, test[:, 8:], test_genders, float(chosen.rsplit("C = ", 1)[1])
    )
    assert 0.8 <= rules["speaker_cv_pick"] <= 1.0 and 0.0 <= rules["speaker_cv_c"] <= 1.0
    kept = ~np.isin(speakers, [2, 4, 6])  # one speaker of gender 0 left: leaving it out leaves one gender
    assert gender_parts.speaker_cv_rules(features[kept], genders[kept], speakers[kept], test, test_genders, parts) == (
        {},
        "too few speakers of a gender for leave-one-speaker-out",
    )


def test_gender_rows_are_the_gender_head_inputs_rows_in_their_order(corpus_dir):
    """A caller that needs another column of the refit's clips (gender_parts.py: the speaker) takes it from
    gender_rows, which must list exactly the clips gender_head_inputs answers for, in its order."""
    rows = prepare_splits(DataArguments(**{**TINY_DATA, "data_dir": corpus_dir}))["train"]
    marked = [-1 if index % 3 == 0 else gender for index, gender in enumerate(rows["gender"])]  # a third unknown
    rows = rows.remove_columns("gender").add_column("gender", marked)
    model = tiny_model(gender_input="statistics", gender_spectral_features=True).eval()
    collator = SERCollator(default_feature_extractor(), model.config)
    features, genders = gender_head_inputs(model, rows, collator, batch_size=4)
    ordered = gender_rows(rows)
    assert len(ordered) == len(features) == sum(gender >= 0 for gender in rows["gender"]) < len(rows)
    assert list(genders) == ordered["gender"] and -1 not in ordered["gender"]
    assert ordered["num_samples"] == sorted(ordered["num_samples"], reverse=True)
    for index in range(len(ordered)):  # each row of the answer is the clip gender_rows puts there, alone
        alone = collator([ordered[index]])
        expected = model.gender_features(alone["input_values"], alone.get("attention_mask"))[0]
        torch.testing.assert_close(torch.as_tensor(features[index]), expected, atol=1e-4, rtol=1e-4)


def test_the_emotion_refit_refuses_too_few_speakers_or_classes_and_leaves_the_head(corpus_dir, caplog):
    """C is chosen by a speaker-grouped cross-validation: with one speaker, or a class missing, there is no
    honest choice, so the trained head stays, with a warning naming why."""
    rows = prepare_splits(DataArguments(**{**TINY_DATA, "data_dir": corpus_dir}))["train"]
    model = tiny_model(emotion_head="am_softmax").eval()
    collator = SERCollator(default_feature_extractor(), model.config)
    head = {name: value.clone() for name, value in model.classifier.state_dict().items()}
    one_speaker = rows.filter(lambda speaker: speaker == rows[0]["speaker"], input_columns="speaker")
    one_class = rows.filter(lambda emotion: emotion != 0, input_columns="emotion")
    cases = ((one_speaker, r"1 speaker\(s\) and \d of 4"), (one_class, r"\d speaker\(s\) and 3 of 4"))
    for part, why in cases:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert refit_emotion_head(model, {"train": part}, collator) is None
        assert re.search(f"the train clips have {why} emotions; the emotion head is not refit", caplog.text)
    assert model.config.emotion_head == "am_softmax"
    assert all(torch.equal(value, head[name]) for name, value in model.classifier.state_dict().items())


def test_the_probes_regression_is_the_baselines_and_reproducible_with_pca():
    """``regression()`` is the baseline's classifier; with PCA on features wider than 500 (an encoder's
    statistics), two fits give the same model (scikit-learn's default would pick a randomized SVD)."""
    generator = np.random.default_rng(0)
    features, labels = generator.normal(size=(120, 640)), generator.integers(0, 4, 120)
    default = regression()
    assert [type(step).__name__ for _, step in default.steps] == ["StandardScaler", "LogisticRegression"]
    assert default[-1].C == 0.1
    first, second = (regression(1.0, 32).fit(features, labels) for _ in range(2))
    np.testing.assert_array_equal(first[-1].coef_, second[-1].coef_)


def test_the_study_runs_every_kind_of_arm_and_counts_wins(corpus_dir, tmp_path, capsys):
    """recipes/studies/study.py on the tiny synthetic corpus: plain at equal epochs, the chain, an
    ablation that reuses the chain's folders, the MFCC baseline; then a rerun reuses everything."""
    sys.path.insert(0, str(REPO_ROOT / "recipes" / "studies"))
    import study

    config = tiny_config(corpus_dir)
    config["training"] = {**config["training"], "num_train_epochs": 5}  # max_steps decides; epochs for the budget
    config["stage2"] = {"num_train_epochs": 3}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    argv = ["--corpus", "emodb", "--config", str(tmp_path / "tiny.yaml"), "--data_dir", corpus_dir,
            "--output_dir", str(tmp_path / "study"), "--arms", "mfcc", "plain-epochs", "gmp-tl", "fresh-stage2",
            "--seeds", "7", "--folds", "0", "--archive", str(tmp_path / "archive")]  # fmt: skip
    summary = study.main(argv)
    assert set(summary["arms"]) == {"mfcc", "plain-epochs", "gmp-tl", "mtl", "stage1", "fresh-stage2"}
    # the MFCC baseline draws nothing: its row names no seed
    assert set(summary["per_fold_uar"]) == {"mfcc"} | {f"{arm} seed 7" for arm in summary["arms"] if arm != "mfcc"}
    assert summary["wins"]["gmp-tl vs plain-epochs"] in ("0 of 1", "1 of 1", "0 of 1 (1 tied)")
    fresh_uar, chain_uar = (summary["per_fold_uar"][f"{arm} seed 7"][0] for arm in ("fresh-stage2", "gmp-tl"))
    assert summary["paired_uar"]["fresh-stage2 vs gmp-tl"] == pytest.approx([fresh_uar, chain_uar])
    assert summary["wins"]["fresh-stage2 vs gmp-tl"].startswith("1 of 1") == (fresh_uar > chain_uar + 1e-9)
    assert summary["arms"]["gmp-tl"]["gender_accuracy"] is not None
    root = tmp_path / "study" / "emodb" / "native"

    def archived_table() -> dict:
        table = json.loads((tmp_path / "archive" / "study_results.json").read_text())
        table["arms"]["mfcc"].pop("compute_time_s")  # the baseline is fitted anew each time (seconds)
        return table

    # the archive's table is the archive's: every fold of the corpus, so fold 1 (never run) is missing there
    archive_table = archived_table()
    assert "gmp-tl seed 7 (1 of 2 folds archived)" in archive_table["incomplete"]
    run_table = json.loads((root / "study_results.json").read_text())
    assert archive_table["per_fold_uar"]["gmp-tl seed 7 (unfinished)"] == run_table["per_fold_uar"]["gmp-tl seed 7"]
    one_arm = [*argv[:8], "--arms", "plain-epochs", "--seeds", "7", "--folds", "0", "--archive",
               str(tmp_path / "archive")]  # fmt: skip
    assert set(study.main(one_arm)["arms"]) == {"plain-epochs"}  # the run's own table: what was asked
    assert archived_table() == archive_table  # the other arms' rows are kept
    assert study.arm_config(config, "plain-epochs", 7, corpus_dir, "native")[0]["plain"]["num_train_epochs"] == 8
    fresh = json.loads((root / "fresh-stage2" / "seed7" / "fold0" / "stage2" / "results.json").read_text())
    assert fresh["model"]["head_init"] == "fresh"
    stage1 = root / "fresh-stage2" / "seed7" / "fold0" / "stage1" / "model.safetensors"
    assert stage1.read_bytes() == (root / "gmp-tl" / "seed7" / "fold0" / "stage1" / "model.safetensors").read_bytes()
    stamp = stage1.stat().st_mtime_ns
    assert study.main(argv)["arms"]["gmp-tl"] == summary["arms"]["gmp-tl"]  # resumed: all reused
    assert stage1.stat().st_mtime_ns == stamp

    import encoder_probe  # what a linear probe reads from each layer of the chain's models

    chain = root / "gmp-tl" / "seed7"
    probes = encoder_probe.main([str(chain), "--models", "stage2", "random_init"])
    layers = json.loads((chain / "fold0" / "stage2" / "config.json").read_text())
    expected = {"mfcc"} | {f"{m}: {f}" for m in ("stage2", "random_init") for f in ("conv", "all layers")}
    expected |= {f"{m}: layer {i}" for m in ("stage2", "random_init") for i in range(layers["num_hidden_layers"] + 1)}
    assert {feature for feature, _, _ in probes} == expected
    assert all(len(values) == 1 and 0.0 <= values[0] <= 1.0 for values in probes.values())  # one fold
    # emotion, from any checkpoint per fold ({fold}); the MFCC row at the baseline's setting is the baseline
    emotion = encoder_probe.main([str(chain), "--target", "emotion", "--models", "stage1",
                                  "--encoder", f"again={chain}/fold{{fold}}/stage1"])  # fmt: skip
    stage1 = [key for key in emotion if key[0].startswith("stage1: ")]
    assert stage1 and all(emotion[(f"again{f[6:]}", *s)] == emotion[(f, *s)] for f, *s in stage1)
    data = json.loads((chain / "fold0" / "mtl" / "results.json").read_text())["data"]
    mfcc = baseline_scores(load_data(DataArguments(**data)), [0])["per_fold"][0]["uar"]
    assert emotion[("mfcc", *encoder_probe.BASELINE_SETTING)] == [pytest.approx(mfcc)]
    (tmp_path / "probe.yaml").write_text(yaml.safe_dump({"data": data}))  # no run folder: the folds of a config
    again = encoder_probe.main(["--data", str(tmp_path / "probe.yaml"), "--folds", "0", "--encoder",
                                f"init={chain}/random_init"])  # fmt: skip
    initial = [key for key in probes if key[0].startswith("random_init: ")]
    assert initial and all(again[(f"init{f[11:]}", *s)] == probes[(f, *s)] for f, *s in initial)
    fewer = encoder_probe.main([str(chain), "--models", "--fit_on", "train"])  # the clips fine-tuning trains on
    assert set(fewer) == {key for key in probes if key[0] == "mfcc"} and all(0 <= v[0] <= 1 for v in fewer.values())
    with pytest.raises(SystemExit, match="needs run folders"):
        encoder_probe.main(["--data", str(tmp_path / "probe.yaml"), "--models", "stage2"])

    import gender_parts  # each half of the gender head's input refit alone; "both" is what the saved head answers

    parts = gender_parts.main([str(root / "gmp-tl" / "seed7")])
    assert set(parts) == {"mtl", "stage1", "stage2"} and all(len(rows) == 1 for rows in parts.values())
    for rows in parts.values():
        assert all(row["both"] == pytest.approx(row["recorded"]) and 0 <= row["spectral"] <= 1 for row in rows.values())
        assert all(0 <= row["both_train_only"] <= 1 for row in rows.values())  # the recipe refits on train + validation
        # the tiny corpus has too few speakers per gender to leave one out: the rules are left out, not guessed
        assert not any("speaker_cv_c" in row or "speaker_cv_pick" in row for row in rows.values())

    import gmp_purity  # what the GMPs encode, and how two runs' labels agree (here: a run with itself)

    purity = gmp_purity.main([str(root / "gmp-tl" / "seed7"), "--compare", str(root / "gmp-tl" / "seed7")])
    assert [row["clusters"] for row in purity] == [4, 8]
    for row in purity:
        assert row["emotion_majority"] <= row["emotion_purity"] <= 1.0 and 0.0 <= row["emotion_nmi"] <= 1.0
        assert row["agreement_nmi"] == pytest.approx(1.0)

    # another machine or session: no run folders, only the committed archive; every fold comes from it
    archived = json.loads((tmp_path / "archive" / "gmp-tl" / "seed7" / "fold0.json").read_text())
    assert archived["settings"]["config"]["data"]["data_dir"] == "emodb" and archived["code"]["package"]
    shutil.rmtree(tmp_path / "study")
    rerun = study.main(argv)["arms"]
    assert {arm: rerun[arm] for arm in rerun if arm != "mfcc"} == {
        arm: summary["arms"][arm] for arm in rerun if arm != "mfcc"
    }
    assert not (root / "gmp-tl" / "seed7" / "fold0").exists()  # nothing recomputed
    assert archived_table() == archive_table
    shutil.rmtree(tmp_path / "archive" / "fresh-stage2")  # a table of what the archive holds, training nothing
    tabulated = study.main([*argv, "--archived_only"])
    assert "fresh-stage2" not in tabulated["arms"] and tabulated["incomplete"] == [
        "fresh-stage2 seed 7 (0 of 1 folds archived)"
    ]
    assert not (root / "fresh-stage2" / "seed7" / "fold0").exists()
    two_folds = study.main([*argv[:-4], "--folds", "0", "1", *argv[-2:], "--archived_only"])  # fold 1 not archived
    assert "gmp-tl" not in two_folds["arms"] and two_folds["per_fold_uar"]["gmp-tl seed 7 (unfinished)"] == {
        0: summary["per_fold_uar"]["gmp-tl seed 7"][0]
    }
    assert "| gmp-tl seed 7 (unfinished) | " in (tmp_path / "archive" / "study_results.md").read_text()
    # the same arm from an encoder pre-trained first (a pre-training config), archived apart
    pretraining = {"encoder_preset": "tiny", "cluster_sizes": [6], "mask_length": 4, **TINY_DATA,
                   "data_dir": corpus_dir, "max_steps": 2, "report_to": "none"}  # fmt: skip
    (tmp_path / "pt_tiny.yaml").write_text(yaml.safe_dump(pretraining))
    from_pretrained = [*argv[:8], "--arms", "plain-epochs", "--seeds", "7", "--folds", "0", "--archive",
                       str(tmp_path / "archive"), "--pretrained", str(tmp_path / "pt_tiny.yaml")]  # fmt: skip
    pretrained = study.main(from_pretrained)
    assert set(pretrained["arms"]) == {"plain-epochs"}
    entry = json.loads((tmp_path / "archive" / "from-pt_tiny" / "plain-epochs" / "seed7" / "fold0.json").read_text())
    encoder = entry["settings"]["config"]["model"]["model_name_or_path"]
    assert (
        encoder["settings"]["stage"] == "pretrain" and encoder["settings"]["DataArguments"]["data_dir"] == "synthetic"
    )
    assert (tmp_path / "study" / "pretrain" / "pt_tiny" / "model.safetensors").is_file()
    # the archive is read on another machine without pre-training again
    shutil.rmtree(tmp_path / "study" / "pretrain")
    again = study.main([*from_pretrained, "--archived_only"])
    assert again["arms"] == pretrained["arms"] and not (tmp_path / "study" / "pretrain" / "pt_tiny").exists()
    # an archive written before an encoder option existed: the missing setting counts as its default
    archived_path = tmp_path / "archive" / "from-pt_tiny" / "plain-epochs" / "seed7" / "fold0.json"
    older = json.loads(archived_path.read_text())
    encoder_settings = older["settings"]["config"]["model"]["model_name_or_path"]["settings"]["PretrainArguments"]
    assert encoder_settings.pop("mask_prob") == PretrainArguments(encoder_preset="tiny").mask_prob
    archived_path.write_text(json.dumps(older))
    assert study.main([*from_pretrained, "--archived_only"])["arms"] == pretrained["arms"]
    encoder_settings["mask_prob"] = 0.5  # made with another value: refused, naming it
    archived_path.write_text(json.dumps(older))
    with pytest.raises(RecordMismatch, match=r"PretrainArguments\.mask_prob: 0\.5 -> 0\.8"):
        study.main([*from_pretrained, "--archived_only"])
    encoder_settings["mask_prob"] = PretrainArguments(encoder_preset="tiny").mask_prob
    archived_path.write_text(json.dumps(older))
    assert "encoder_preset" not in entry["settings"]["config"]["model"]
    # task-adaptive: one encoder per fold, pre-trained on that fold's training audio only (no test speaker)
    (tmp_path / "pt_adaptive.yaml").write_text(yaml.safe_dump({**pretraining, "audio": "training_folds"}))
    adaptive = [*from_pretrained[:-1], str(tmp_path / "pt_adaptive.yaml")]
    assert set(study.main(adaptive)["arms"]) == {"plain-epochs"}
    archived = tmp_path / "archive" / "from-pt_adaptive" / "plain-epochs" / "seed7" / "fold0.json"
    encoder = json.loads(archived.read_text())["settings"]["config"]["model"]["model_name_or_path"]["settings"]
    assert encoder["PretrainArguments"]["audio"] == "training_folds" and encoder["DataArguments"]["fold"] == 0
    pretrained_dir = tmp_path / "study" / "pretrain" / "pt_adaptive-synthetic-native-fold0"
    heard = json.loads((pretrained_dir / "pretrain_results.json").read_text())["data"]["clips"]
    rows = load_data(DataArguments(**{**TINY_DATA, "data_dir": corpus_dir}))
    assert heard == len(fold_split(rows, 0)["train"]) < len(rows)
    assert (tmp_path / "study" / "emodb" / "native" / "from-pt_adaptive" / "fold0" / "plain-epochs" / "seed7").is_dir()
    shutil.rmtree(pretrained_dir)  # every fold archived: a rerun pre-trains nothing
    assert study.main(adaptive)["arms"] == study.main([*adaptive, "--archived_only"])["arms"]
    assert not pretrained_dir.exists()
    # --set: a variant of the config, archived in a folder named after its changes, the plain archive untouched
    variant = [*from_pretrained[:-2], "--set", "model.use_weighted_layer_sum=True", "--set", "plain.learning_rate=2e-3"]
    held = sorted(path.relative_to(tmp_path) for path in (tmp_path / "archive").rglob("fold*.json"))
    assert set(study.main(variant)["arms"]) == {"plain-epochs"}
    folder = tmp_path / "archive" / "set-model.use_weighted_layer_sum=true,plain.learning_rate=0.002"
    changed = json.loads((folder / "plain-epochs" / "seed7" / "fold0.json").read_text())["settings"]["config"]
    assert changed["model"]["use_weighted_layer_sum"] is True and changed["plain"]["learning_rate"] == 0.002
    assert sorted(path.relative_to(tmp_path) for path in (tmp_path / "archive").rglob("fold*.json")) == sorted(
        [*held, folder.relative_to(tmp_path) / "plain-epochs" / "seed7" / "fold0.json"]
    )
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        study.main([*argv, "--set", "learning_rate=1"])
    config["training"]["learning_rate"] = 0.0123  # other settings: refused, naming the key, archive untouched
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    before = (tmp_path / "archive" / "gmp-tl" / "seed7" / "fold0.json").read_bytes()
    with pytest.raises(RecordMismatch, match="learning_rate"):
        study.main(argv)
    with pytest.raises(SystemExit) as stopped:  # from the command line: one line, no traceback
        study.cli(argv)
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert stopped.value.code == 2 and "Traceback" not in err
    assert last.startswith("study.py: error: ") and "learning_rate" in last
    assert (tmp_path / "archive" / "gmp-tl" / "seed7" / "fold0.json").read_bytes() == before
