"""HuBERT pre-training (`gmp-tl pretrain`): MFCC targets line up with encoder frames, HuBERT's span
masks, a head that learns, the recipe's two iterations, resume and records, and the result loading into
every fine-tuning recipe without a warning."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, crash_after_the_first_checkpoint, padded_batch
from safetensors.torch import load_file
from test_recipes import TINY_DATA, TINY_TRAINING
from transformers import HubertConfig, TrainingArguments

from gmp_tl_hf.arguments import PRETRAIN_DEFAULTS, DataArguments, PretrainArguments, load_config_file
from gmp_tl_hf.cli import main as cli
from gmp_tl_hf.cross_validation import run_cv
from gmp_tl_hf.gmp.mfcc import MFCCFrames
from gmp_tl_hf.models import HubertForGMPEmotion
from gmp_tl_hf.models.configuration_hubert_gmp import conv_output_length
from gmp_tl_hf.models.modeling_hubert_gmp import LengthAwareHubertModel
from gmp_tl_hf.presets import encoder_preset
from gmp_tl_hf.pretraining import MaskedPredictionModel, MaskedPredictionSettings
from gmp_tl_hf.recipes.pretrain import run_pretrain
from gmp_tl_hf.records import RecordMismatch


def tiny_encoder(seed: int = 0) -> LengthAwareHubertModel:
    torch.manual_seed(seed)
    return LengthAwareHubertModel(HubertConfig(**encoder_preset("tiny"), hidden_dropout=0.0, layerdrop=0.0))


@pytest.mark.parametrize("preset", ["tiny", "base", "large"])
def test_mfcc_frames_are_the_encoder_frames_and_ignore_padding(preset):
    config = HubertConfig(**encoder_preset(preset))
    mfcc = MFCCFrames(config)
    for samples in (400, 719, 720, 16000, 16001, 48123):
        assert mfcc.num_frames(samples) == conv_output_length(samples, config.conv_kernel, config.conv_stride)
    waves, mask = padded_batch([16000, 9000, 401])
    features, frame_mask = mfcc.layer_features(waves, mask)
    assert features.shape == (3, mfcc.num_frames(16000), 39)
    for row, length in enumerate((16000, 9000, 401)):
        alone, _ = mfcc.layer_features(waves[row : row + 1, :length])
        frames = mfcc.num_frames(length)
        assert frame_mask[row].sum() == frames and not features[row, frames:].any()
        torch.testing.assert_close(features[row, :frames], alone[0])
    assert torch.isfinite(features).all() and features[0].std(dim=0).min() > 0  # every dimension varies


def test_span_masks_cover_valid_frames_in_runs_of_at_least_the_span_length():
    model = MaskedPredictionModel(tiny_encoder(), MaskedPredictionSettings((10,)))
    lengths = torch.tensor([16000 * 6, 16000 * 3])
    frame_mask = model.encoder.frame_mask(torch.zeros(2, 16000 * 6), lengths)
    np.random.seed(0)
    fractions = []
    for _ in range(50):
        masks = model.draw_masks(frame_mask)
        assert not (masks & ~frame_mask).any()  # never a padding frame
        for row in masks.numpy():
            runs = np.diff(np.flatnonzero(np.diff(np.r_[0, row.astype(int), 0])))[::2]
            assert runs.min() >= 10
        fractions.append(float(masks[0].sum() / frame_mask[0].sum()))
    # span starts with probability 0.8 / 10 per frame, spans overlapping: about 1 - exp(-0.8) = 55 % masked
    assert 0.45 < np.mean(fractions) < 0.65


def test_the_prediction_head_learns_masked_targets():
    torch.manual_seed(0)
    model = MaskedPredictionModel(tiny_encoder(), MaskedPredictionSettings((8, 16)))
    waves, mask = padded_batch([16000, 12000])
    frame_mask = model.encoder.frame_mask(waves, mask.sum(-1))
    targets = torch.tensor([[3, 11], [5, 2]])[:, None, :].repeat(1, frame_mask.shape[1], 1)  # told by the context
    targets[~frame_mask] = -100
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    np.random.seed(0)
    losses = []
    for _ in range(40):
        output = model(waves, mask, gmp_labels=targets)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(output.loss.item())
    assert output.masked_frames.shape == (2,) and (output.masked_frames > 0).all()
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def _pretrain_args(corpus_dir, output_dir, **changes):
    values = {"encoder_preset": "tiny", "cluster_sizes": [6], "mask_length": 4, **changes}
    args = PretrainArguments(**values)
    data = DataArguments(**{**TINY_DATA, "data_dir": corpus_dir})
    training = {**PRETRAIN_DEFAULTS, **TINY_TRAINING, "eval_strategy": "no", "max_steps": 6, "save_steps": 3}
    training = TrainingArguments(output_dir=str(output_dir), **training)
    return args, data, training


def test_pretrain_iterations_resume_records_and_every_recipe_loads_the_result(corpus_dir, tmp_path, caplog):
    # iteration 1 (MFCC targets), uninterrupted and crashed after its first checkpoint, then resumed
    reference = run_pretrain(*_pretrain_args(corpus_dir, tmp_path / "full"))
    assert reference["global_step"] == 6 and reference["targets"]["targets"] == "mfcc"
    assert {"loss", "masked_accuracy_0"} <= set(reference["history"][-1])
    with crash_after_the_first_checkpoint():
        run_pretrain(*_pretrain_args(corpus_dir, tmp_path / "iter1"))
    args, data, training = _pretrain_args(
        corpus_dir,
        tmp_path / "iter1",
    )
    training.resume_from_checkpoint = "last"
    resumed = run_pretrain(args, data, training)
    assert resumed["global_step"] == 6
    full, after = (
        load_file(str(tmp_path / "full" / "model.safetensors")),
        load_file(str(tmp_path / "iter1" / "model.safetensors")),
    )
    assert full.keys() == after.keys()
    for name, tensor in full.items():
        torch.testing.assert_close(after[name], tensor, atol=1e-6, rtol=1e-5, msg=name)

    # the record: the same settings are reused, others refused before any work
    stamp = (tmp_path / "iter1" / "model.safetensors").stat().st_mtime_ns
    assert run_pretrain(*_pretrain_args(corpus_dir, tmp_path / "iter1"))["global_step"] == 6
    with pytest.raises(RecordMismatch, match="mask_prob"):
        run_pretrain(*_pretrain_args(corpus_dir, tmp_path / "iter1", mask_prob=0.5))
    assert (tmp_path / "iter1" / "model.safetensors").stat().st_mtime_ns == stamp

    # iteration 2: two target sets from a layer of iteration 1's encoder, continued from it
    second = run_pretrain(*_pretrain_args(
        corpus_dir, tmp_path / "iter2", encoder_preset=None, model_name_or_path=str(tmp_path / "iter1"),
        targets="layer", target_model=str(tmp_path / "iter1"), cluster_sizes=[4, 8],
    ))  # fmt: skip
    assert second["targets"]["layer"] == 1 and {"masked_accuracy_0", "masked_accuracy_1"} <= set(second["history"][-1])
    config = json.loads((tmp_path / "iter2" / "config.json").read_text())
    assert config["model_type"] == "hubert" and config["architectures"] == ["HubertModel"]
    assert config["mask_time_prob"] == HubertConfig().mask_time_prob  # fine-tuning keeps its own SpecAugment

    # every recipe takes it as model_name_or_path; the pre-training head is not in it, nothing to warn about
    caplog.set_level(logging.WARNING)
    model = HubertForGMPEmotion.from_pretrained(tmp_path / "iter2")
    encoder = load_file(str(tmp_path / "iter2" / "model.safetensors"))
    torch.testing.assert_close(
        model.hubert.encoder.layers[0].attention.k_proj.weight, encoder["encoder.layers.0.attention.k_proj.weight"]
    )
    caplog.clear()
    model_args = {"model_name_or_path": str(tmp_path / "iter2"), "freeze_feature_encoder": False, "layerdrop": 0.0}
    config = {"data": {**TINY_DATA, "data_dir": corpus_dir}, "model": model_args,
              "gmp": {"cluster_sizes": [4], "kmeans_max_iter": 5},
              "training": {**TINY_TRAINING, "max_steps": 2}}  # fmt: skip
    chain = run_cv(config, tmp_path / "cv", "gmp-tl", folds=[0])
    plain = run_cv(config, tmp_path / "plain", "plain", folds=[0])
    assert set(chain["stages"]) == {"mtl", "stage1", "stage2"} and set(plain["stages"]) == {"plain"}
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "mtime" not in r.getMessage()
    ]
    assert not warnings, warnings
    mtl = json.loads((tmp_path / "cv" / "fold0" / "mtl" / "record.json").read_text())
    assert mtl["inputs"]["source"].startswith("sha256:")


def test_the_tiny_config_runs_on_emodb(emodb_dir, tmp_path, capsys):
    """The documented command on real speech (fewer steps here; the full config is timed in the README)."""
    config = load_config_file(REPO_ROOT / "recipes" / "configs" / "pretrain_tiny.yaml")
    assert config["dataset"] == "emodb" and config["targets"] == "mfcc"
    cli(["pretrain", "--config", str(REPO_ROOT / "recipes" / "configs" / "pretrain_tiny.yaml"),
         "--data_dir", str(emodb_dir), "--output_dir", str(tmp_path / "pt"), "--max_steps", "4", "--save_steps", "4",
         "--logging_steps", "2"])  # fmt: skip
    assert "pre-trained encoder in" in capsys.readouterr().out
    results = json.loads((tmp_path / "pt" / "pretrain_results.json").read_text())
    assert results["data"]["clips"] == 535 and results["targets"]["frames"] > 50000
    HubertForGMPEmotion.from_pretrained(tmp_path / "pt")
