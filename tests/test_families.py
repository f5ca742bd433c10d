"""Other encoder families (WavLM, wav2vec 2.0) beside HuBERT: one implementation of the heads, padding-exact,
saved with their own code, loaded without the package, answered by the pipeline, trained by the recipes."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import padded_batch, speechlike, tiny_model
from safetensors.torch import load_file
from transformers import AutoConfig

from gmp_tl_hf import GMP_MODELS, Wav2Vec2ForGMPEmotion, WavLMForGMPEmotion, default_feature_extractor
from gmp_tl_hf.arguments import ModelArguments
from gmp_tl_hf.model_setup import build_model, materialize_random_encoder

FAMILIES = ["wavlm", "wav2vec2"]


@pytest.mark.parametrize("norm", ["group", "layer"])
@pytest.mark.parametrize("family", FAMILIES)
def test_padding_does_not_change_any_output(family, norm):
    model = tiny_model(seed=1, family=family, feat_extract_norm=norm, do_stable_layer_norm=norm == "layer",
                       gender_input="statistics")  # fmt: skip
    assert isinstance(model, GMP_MODELS[family]) and hasattr(model, family)  # weights named as pre-trained
    values, mask = padded_batch([12000, 20000])
    with torch.no_grad():
        batched = model(values, attention_mask=mask, window_frames=10)
        alone = model(values[:1, :12000], window_frames=10)
    torch.testing.assert_close(batched.logits[0], alone.logits[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(batched.gender_logits[0], alone.gender_logits[0], atol=1e-5, rtol=0)
    windows = alone.window_logits.shape[1]
    torch.testing.assert_close(batched.window_logits[0, :windows], alone.window_logits[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_family_loads_without_the_package_and_answers_in_the_pipeline(family, tmp_path):
    model = tiny_model(seed=2, family=family, gender_head_trained=True)
    model.save_pretrained(tmp_path)
    default_feature_extractor().save_pretrained(tmp_path)
    wave = speechlike(1.5, seed=3)
    with torch.no_grad():
        features = default_feature_extractor()(wave, sampling_rate=16000, return_tensors="pt")
        expected = model(features.input_values).logits[0].softmax(-1).tolist()
    np.save(tmp_path / "wave.npy", wave)
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from transformers import AutoModel, AutoModelForAudioClassification, pipeline
        path = {str(tmp_path)!r}
        names = [type(AutoModelForAudioClassification.from_pretrained(path, trust_remote_code=True)).__name__,
                 type(AutoModel.from_pretrained(path, trust_remote_code=True)).__name__]
        classify = pipeline("audio-classification", model=path, trust_remote_code=True)
        answer = classify(np.load(path + "/wave.npy"), return_gender=True, return_timeline=True, top_k=4)
        assert "gmp_tl_hf" not in sys.modules
        print(json.dumps({{"names": names, "answer": answer}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["names"] == [type(model).__name__] * 2
    scores = {entry["label"]: entry["score"] for entry in out["answer"]["emotion"]}
    assert [scores[model.config.id2label[i]] for i in range(4)] == pytest.approx(expected, abs=1e-5)
    assert {entry["label"] for entry in out["answer"]["gender"]} == {"female", "male"}
    assert out["answer"]["timeline"][-1]["end"] == pytest.approx(1.5, abs=0.03)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == f"{family}_gmp"


@pytest.mark.parametrize("family", FAMILIES)
def test_recipes_pick_the_family_from_the_checkpoint(family, tmp_path):
    source = materialize_random_encoder("tiny", tmp_path / "encoder", seed=0, family=family)
    assert AutoConfig.from_pretrained(source).model_type == family
    args = ModelArguments(model_name_or_path=source, gender_input="statistics")
    model = build_model("mtl", source, args, ["neutral", "happy", "angry", "sad"], [], seed=0)
    assert type(model) is {"wavlm": WavLMForGMPEmotion, "wav2vec2": Wav2Vec2ForGMPEmotion}[family]
    saved = load_file(str(tmp_path / "encoder" / "model.safetensors"))
    ours = model.encoder_model.state_dict()  # the saved random encoder, loaded unchanged
    for name, tensor in saved.items():
        torch.testing.assert_close(ours[name], tensor, atol=0, rtol=0)


@pytest.mark.parametrize("family", ["hubert", *FAMILIES])
def test_loading_an_encoder_reports_each_new_head_once_and_warns_of_nothing(family, tmp_path, caplog):
    source = materialize_random_encoder("tiny", tmp_path / "encoder", seed=0, family=family)
    args = ModelArguments(model_name_or_path=source, gender_spectral_features=True)
    with caplog.at_level(logging.INFO, logger="gmp_tl_hf.model_setup"):
        build_model("mtl", source, args, ["neutral", "happy"], [], seed=0)
    said = [record for record in caplog.records if record.name == "gmp_tl_hf.model_setup"]
    # the spectral weights are the gender head's, not a head of their own
    expected = f"mtl from {source}: new heads classifier, gender_classifier, projector"
    assert [record.getMessage() for record in said] == [expected]
    assert all(record.levelno == logging.INFO for record in said)


def test_an_unsupported_checkpoint_is_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    with pytest.raises(ValueError, match="'whisper' checkpoint is not supported"):
        build_model("mtl", str(tmp_path), ModelArguments(model_name_or_path=str(tmp_path)), ["a", "b"], [], seed=0)
