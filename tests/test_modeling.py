"""HubertForGMPEmotion: shapes, padding invariance, losses, AM-Softmax, errors, loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.fft
import torch
import torch.nn.functional as F
from conftest import padded_batch, speechlike, tiny_config, tiny_model
from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification, HubertConfig, HubertModel

from gmp_tl_hf import HubertForGMPEmotion, HubertGMPConfig, default_feature_extractor
from gmp_tl_hf.models.spectral import spectral_frames
from gmp_tl_hf.presets import encoder_preset


def test_output_shapes_of_every_head():
    model = tiny_model(attn_implementation="eager")
    values, mask = padded_batch([16000, 12000])
    out = model(values, attention_mask=mask, output_hidden_states=True, output_attentions=True, window_frames=1)
    frames = model.num_frames(16000)
    assert frames == 49
    assert out.logits.shape == (2, 4)
    assert out.gender_logits.shape == (2, 2)
    assert [tuple(t.shape) for t in out.gmp_logits] == [(2, frames, 5), (2, frames, 7)]
    assert out.window_logits.shape == (2, frames, 4)
    assert out.frame_mask.sum(dim=1).tolist() == [49, model.num_frames(12000)]
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    assert all(h.shape == (2, frames, 32) for h in out.hidden_states)
    assert len(out.attentions) == model.config.num_hidden_layers
    assert out.attentions[0].shape == (2, 2, frames, frames)
    assert out.loss is None


def test_no_frame_heads_gives_no_gmp_logits():
    model = tiny_model(gmp_cluster_sizes=())
    out = model(torch.randn(1, 8000))
    assert out.gmp_logits is None and "gmp_logits" not in out
    assert len(model.gmp_heads) == 0


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # HuBERT-base style: GroupNorm in the first conv layer
        {"feat_extract_norm": "layer", "do_stable_layer_norm": True},  # HuBERT-large style
        {"pooling": "attentive", "emotion_head": "am_softmax"},
        {"use_weighted_layer_sum": True},
        {"pooling": "statistics", "gender_input": "embedding"},
        {"pooling": "statistics", "emotion_input": "all_layers", "use_weighted_layer_sum": True},
    ],
    ids=["group-norm", "layer-norm", "attentive-am", "weighted-layers", "statistics", "all-layers"],
)
def test_padding_does_not_change_outputs(overrides):
    model = tiny_model(**overrides)
    alone, _ = padded_batch([16000], seed=1)
    padded, mask = padded_batch([24000, 16000, 9000], seed=2)
    padded[1] = 0
    padded[1, :16000] = alone[0]
    single = model(alone, window_frames=1)
    batched = model(padded, attention_mask=mask, window_frames=1)
    frames = single.frame_mask.shape[1]
    torch.testing.assert_close(batched.logits[1], single.logits[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(batched.gender_logits[1], single.gender_logits[0], atol=1e-5, rtol=0)
    for scale in range(2):
        torch.testing.assert_close(
            batched.gmp_logits[scale][1, :frames], single.gmp_logits[scale][0], atol=1e-5, rtol=0
        )
    # AM-Softmax frame logits are cosines times am_scale (30): compare at the cosine's precision.
    frame_atol = 1e-5 * (model.config.am_scale if model.config.emotion_head == "am_softmax" else 1)
    torch.testing.assert_close(batched.window_logits[1, :frames], single.window_logits[0], atol=frame_atol, rtol=0)
    assert not batched.frame_mask[1, frames:].any()


def test_without_masked_group_norm_padding_would_leak():
    """The reason for LengthAwareGroupNormConvLayer: stock GroupNorm sees the zero padding."""
    model = tiny_model()
    alone, _ = padded_batch([16000], seed=1)
    padded = torch.zeros(1, 32000)
    padded[0, :16000] = alone[0]
    mask = torch.zeros(1, 32000, dtype=torch.long)
    mask[0, :16000] = 1
    with_mask = model(padded, attention_mask=mask).logits
    without_mask = model(padded).logits
    reference = model(alone).logits
    torch.testing.assert_close(with_mask, reference, atol=1e-5, rtol=0)
    assert (without_mask - reference).abs().max() > 1e-4


HEADS_X_POOLING = [
    {"emotion_head": emotion_head, "pooling": pooling, "emotion_input": "projected"}
    for emotion_head in ("linear", "am_softmax")
    for pooling in ("mean", "attentive", "statistics")
] + [
    {"emotion_head": "linear", "pooling": "statistics", "emotion_input": "all_layers"},
    {"emotion_head": "am_softmax", "pooling": "attentive", "emotion_input": "all_layers"},
]


def confident_model(**overrides) -> HubertForGMPEmotion:
    """A random model whose heads are scaled up, so that it answers confidently, as after training:
    the case where averaging per-frame probabilities and pooling-then-classifying part ways."""
    model = tiny_model(**overrides)
    with torch.no_grad():
        if model.config.emotion_input == "projected":
            model.projector.weight.mul_(30)
        else:  # the layers themselves are layer-normed: a larger head instead
            model.classifier.weight.mul_(30)
        if model.config.emotion_head == "linear":
            model.classifier.weight.mul_(30)
        if model.config.pooling == "attentive":
            model.pooler.score.weight.mul_(30)
    return model


@pytest.mark.parametrize(
    "overrides", HEADS_X_POOLING, ids=lambda o: f"{o['emotion_head']}-{o['pooling']}-{o['emotion_input']}"
)
def test_a_window_spanning_the_clip_gives_the_utterance_answer(overrides):
    model = confident_model(**overrides)
    values, mask = padded_batch([16000, 11000], seed=3)
    frames = int(model.num_frames(16000))
    whole = model(values, attention_mask=mask, window_frames=frames)
    assert whole.window_logits.shape[1] == 1
    torch.testing.assert_close(whole.window_logits[:, 0], whole.logits, atol=1e-4, rtol=0)
    if model.config.emotion_head == "linear":  # confident, where a per-frame average would disagree
        frame_average = model(values, attention_mask=mask, window_frames=1).window_logits.softmax(-1)
        assert (frame_average[0, :frames].mean(0).max() - whole.logits.softmax(-1)[0].max()).abs() > 0.05
    windows = model(values, attention_mask=mask, window_frames=10, output_hidden_states=True)
    # each window is the utterance path (pooling + head) over its frames of the whole-clip encoding
    if model.config.emotion_input == "projected":
        frames = model.projector(windows.hidden_states[-1][:1, :10])
    else:
        frames = torch.cat([layer[:1, :10] for layer in windows.hidden_states], dim=-1)
    first = model.classifier(model.pooler(frames, torch.ones(1, 10, dtype=torch.bool)))
    torch.testing.assert_close(windows.window_logits[0, 0], first[0], atol=1e-4, rtol=0)
    assert windows.window_mask[1].sum() == -(-int(model.num_frames(11000)) // 10)


def test_one_frame_windows_of_the_linear_mean_head_average_to_the_utterance():
    model = tiny_model()
    out = model(torch.randn(1, 16000), window_frames=1)
    torch.testing.assert_close(out.window_logits.mean(dim=1), out.logits, atol=1e-5, rtol=0)


def test_each_loss_term_is_used_only_when_its_labels_are_given():
    model = tiny_model(gender_loss_weight=0.5, gmp_loss_weight=2.0)
    values, mask = padded_batch([16000, 12000])
    labels = torch.tensor([1, 3])
    genders = torch.tensor([0, 1])
    frames = model.num_frames(16000)
    gmp = torch.stack([torch.randint(0, 5, (2, frames)), torch.randint(0, 7, (2, frames))], dim=-1)
    gmp[1, model.num_frames(12000) :] = -100

    out = model(values, attention_mask=mask)
    assert out.loss is None
    emotion = F.cross_entropy(out.logits, labels)
    gender = F.cross_entropy(out.gender_logits, genders)
    valid = gmp[..., 0] != -100
    frame = torch.stack([F.cross_entropy(out.gmp_logits[s][valid], gmp[..., s][valid]) for s in range(2)]).mean()

    def loss(**kwargs):
        return model(values, attention_mask=mask, **kwargs).loss

    torch.testing.assert_close(loss(labels=labels), emotion)
    torch.testing.assert_close(loss(gender_labels=genders), 0.5 * gender)
    torch.testing.assert_close(loss(gmp_labels=gmp), 2.0 * frame)
    torch.testing.assert_close(
        loss(labels=labels, gender_labels=genders, gmp_labels=gmp), emotion + 0.5 * gender + 2 * frame
    )


def test_ignored_labels_do_not_count():
    model = tiny_model()
    values, mask = padded_batch([16000, 12000])
    out = model(values, attention_mask=mask, labels=torch.tensor([1, -100]), gender_labels=torch.tensor([-100, 1]))
    expected = F.cross_entropy(out.logits[:1], torch.tensor([1])) + F.cross_entropy(
        out.gender_logits[1:], torch.tensor([1])
    )
    torch.testing.assert_close(out.loss, expected)


def test_zero_gender_weight_trains_the_gender_head_as_a_probe_only():
    model = tiny_model(gender_loss_weight=0.0).train()
    values, mask = padded_batch([16000, 12000])
    out = model(values, attention_mask=mask, gender_labels=torch.tensor([0, 1]))
    torch.testing.assert_close(out.loss, F.cross_entropy(out.gender_logits, torch.tensor([0, 1])))
    out.loss.backward()
    assert model.gender_classifier.weight.grad.abs().sum() > 0
    assert model.projector.weight.grad is None and model.classifier.weight.grad is None
    assert all(p.grad is None for p in model.hubert.parameters())


@pytest.mark.parametrize("probe", [True, False])
def test_an_untrained_gender_head_cannot_move_training_only_without_the_probe(probe):
    """The probe's gradients share the Trainer's gradient-norm clipping with the encoder's, so with it the
    gender head's weights (here: a refit's spectral weights, as stage 2 inherits them) change the emotion
    training; with ``gender_probe=False`` (the recipes, which refit the head instead) they cannot."""
    values, mask = padded_batch([16000, 12000])
    labels = {"labels": torch.tensor([0, 3]), "gender_labels": torch.tensor([1, 0])}
    settings = {"gender_loss_weight": 0.0, "gender_probe": probe, "gender_input": "statistics"}
    models = [tiny_model(gender_spectral_features=True, **settings).train() for _ in range(2)]
    with torch.no_grad():
        models[1].spectral_gender_weight.normal_(std=0.1)
    for model in models:  # two clipped AdamW steps, as the Trainer's
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for _ in range(2):
            torch.manual_seed(0)
            model(values, attention_mask=mask, **labels).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            optimizer.step()
            optimizer.zero_grad()
    encoders = [dict(model.hubert.named_parameters()) for model in models]
    same = all(torch.equal(param, encoders[1][name]) for name, param in encoders[0].items())
    assert same is not probe
    if not probe:
        assert torch.equal(models[0].gender_classifier.weight, models[1].gender_classifier.weight)


def test_without_the_probe_gender_labels_add_nothing_to_the_loss():
    model = tiny_model(gender_loss_weight=0.0, gender_probe=False).train()
    values, mask = padded_batch([16000, 12000])
    assert model(values, attention_mask=mask, gender_labels=torch.tensor([0, 1])).loss is None
    labels = torch.tensor([0, 3])
    torch.manual_seed(0)
    with_genders = model(values, attention_mask=mask, labels=labels, gender_labels=torch.tensor([0, 1])).loss
    torch.manual_seed(0)
    torch.testing.assert_close(with_genders, model(values, attention_mask=mask, labels=labels).loss)


def test_frame_labels_on_padded_frames_are_ignored():
    """Labels the collator left on padding (instead of -100) must not reach the loss."""
    model = tiny_model(gmp_loss_weight=1.0)
    values, mask = padded_batch([16000, 8000])
    frames = model.num_frames(16000)
    gmp = torch.zeros(2, frames, 2, dtype=torch.long)
    clean = gmp.clone()
    clean[1, model.num_frames(8000) :] = -100
    torch.testing.assert_close(
        model(values, attention_mask=mask, gmp_labels=gmp).loss,
        model(values, attention_mask=mask, gmp_labels=clean).loss,
    )


def test_masked_gmp_loss_scores_masked_frames_only():
    model = tiny_model(gmp_loss_frames="masked", mask_time_prob=0.3, mask_time_length=4, mask_time_min_masks=1).train()
    values, mask = padded_batch([16000, 16000])
    frames = model.num_frames(16000)
    # Frame labels that are right everywhere except on masked frames would give a loss from masked frames only;
    # here we check the weaker, exact property: the loss equals the CE over the frames the model masked.
    gmp = torch.stack([torch.randint(0, 5, (2, frames)), torch.randint(0, 7, (2, frames))], dim=-1)
    captured = {}

    def hook(module, args, kwargs):
        captured["mask"] = kwargs["mask_time_indices"]

    handle = model.hubert.register_forward_pre_hook(hook, with_kwargs=True)
    torch.manual_seed(0)
    out = model(values, attention_mask=mask, gmp_labels=gmp)
    handle.remove()
    masked = captured["mask"]
    assert 0 < masked.sum() < masked.numel()
    expected = torch.stack([F.cross_entropy(out.gmp_logits[s][masked], gmp[..., s][masked]) for s in range(2)]).mean()
    torch.testing.assert_close(out.loss, expected)


def test_am_softmax_margin_only_in_training_and_equal_to_the_cosine_formula():
    model = tiny_model(emotion_head="am_softmax", am_margin=0.25, am_scale=20.0)
    values, mask = padded_batch([16000, 12000, 10000])
    labels = torch.tensor([0, 2, 3])
    captured = {}
    model.pooler.register_forward_hook(lambda module, args, output: captured.update(embedding=output))

    for training in (True, False):
        model.train(training)
        out = model(values, attention_mask=mask, labels=labels, gender_labels=None)
        embedding = captured["embedding"]
        cosine = F.normalize(embedding, dim=-1) @ F.normalize(model.classifier.weight, dim=-1).T
        torch.testing.assert_close(out.logits, 20.0 * cosine)
        target = F.one_hot(labels, 4).float()
        margin = 0.25 if training else 0.0
        torch.testing.assert_close(out.loss, F.cross_entropy(20.0 * (cosine - margin * target), labels))
    assert out.logits.abs().max() <= 20.0 + 1e-4


def test_errors_name_the_problem():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        model(torch.randn(16000))
    with pytest.raises(ValueError, match="attention_mask shape"):
        model(torch.randn(2, 16000), attention_mask=torch.ones(2, 15000, dtype=torch.long))
    with pytest.raises(ValueError, match=r"clip\(s\) \[1\] have \[300\] samples, fewer than one encoder frame \(400"):
        values, mask = padded_batch([16000, 300])
        model(values, attention_mask=mask)
    frames = model.num_frames(16000)
    with pytest.raises(ValueError, match=r"gmp_labels must be \(batch, frames, 2\)"):
        model(torch.randn(1, 16000), gmp_labels=torch.zeros(1, frames, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="gmp_labels has 40 frames but the encoder gives 49"):
        model(torch.randn(1, 16000), gmp_labels=torch.zeros(1, 40, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"gmp_labels\[\.\.\., 1\] must be in \[0, 7\)"):
        gmp = torch.zeros(1, frames, 2, dtype=torch.long)
        gmp[0, 3, 1] = 7
        model(torch.randn(1, 16000), gmp_labels=gmp)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\) or -100, got values from 0 to 4"):
        model(torch.randn(2, 16000), labels=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r"gender_labels must be in \[0, 2\)"):
        model(torch.randn(1, 16000), gender_labels=torch.tensor([-1]))
    with pytest.raises(ValueError, match="no GMP heads"):
        tiny_model(gmp_cluster_sizes=())(torch.randn(1, 16000), gmp_labels=torch.zeros(1, frames, 1, dtype=torch.long))


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="pooling"):
        HubertGMPConfig(pooling="max")
    with pytest.raises(ValueError, match="emotion_head"):
        HubertGMPConfig(emotion_head="cosface")
    with pytest.raises(ValueError, match="at least 2 classes"):
        HubertGMPConfig(gmp_cluster_sizes=(50, 1))
    with pytest.raises(ValueError, match="mask_time_prob"):
        HubertForGMPEmotion(tiny_config(gmp_loss_frames="masked", mask_time_prob=0.0))


def test_config_frame_arithmetic_matches_the_model():
    model = tiny_model()
    config = model.config
    assert config.min_input_samples == 400
    lengths = [399, 400, 401, 719, 720, 721, 16000, 16319, 16320, 16321, 48000]
    expected = [0, *model.num_frames(torch.tensor(lengths[1:])).tolist()]
    assert [config.num_frames(n) for n in lengths] == expected
    for n in lengths[1:6]:
        assert model(torch.randn(1, n)).gmp_logits[0].shape[1] == config.num_frames(n)


def test_config_serialises_all_fields(tmp_path):
    config = tiny_config(pooling="attentive", emotion_head="am_softmax", am_margin=0.3, gmp_cluster_sizes=(4, 8, 16))
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, HubertGMPConfig)
    for key in ("pooling", "emotion_head", "am_margin", "am_scale", "gmp_cluster_sizes", "gender_labels", "id2label"):
        assert getattr(loaded, key) == getattr(config, key)


def test_save_and_load_give_identical_outputs(tmp_path):
    model = tiny_model(pooling="attentive")
    model.save_pretrained(tmp_path)
    values, mask = padded_batch([16000, 9000])
    reloaded = HubertForGMPEmotion.from_pretrained(tmp_path).eval()
    for auto in (AutoModel, AutoModelForAudioClassification):
        assert isinstance(auto.from_pretrained(tmp_path), HubertForGMPEmotion)
    a, b = model(values, attention_mask=mask), reloaded(values, attention_mask=mask)
    torch.testing.assert_close(a.logits, b.logits, atol=0, rtol=0)
    torch.testing.assert_close(a.gmp_logits[1], b.gmp_logits[1], atol=0, rtol=0)
    assert (tmp_path / "preprocessor_config.json").is_file()


def test_plain_hubert_checkpoint_loads_encoder_and_adds_new_heads(tmp_path):
    torch.manual_seed(0)
    plain_config = HubertConfig(**encoder_preset("tiny"))
    plain = HubertModel(plain_config).eval()
    plain.save_pretrained(tmp_path)
    model = HubertForGMPEmotion.from_pretrained(tmp_path, num_labels=3, gmp_cluster_sizes=(6,)).eval()
    assert model.config.num_labels == 3 and list(model.config.gmp_cluster_sizes) == [6]
    for name, param in plain.state_dict().items():
        torch.testing.assert_close(model.hubert.state_dict()[name], param, atol=0, rtol=0)
    values = torch.randn(1, 16000)
    hidden = model(values, output_hidden_states=True).hidden_states[-1]
    torch.testing.assert_close(hidden, plain(values).last_hidden_state, atol=1e-6, rtol=0)


def test_own_checkpoint_with_other_label_set(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    id2label = {0: "anger", 1: "boredom", 2: "disgust", 3: "fear", 4: "happiness", 5: "sadness", 6: "neutral"}
    model = HubertForGMPEmotion.from_pretrained(
        tmp_path,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        gmp_cluster_sizes=(),
        ignore_mismatched_sizes=True,
    )
    assert model.classifier.out_features == 7 and len(model.gmp_heads) == 0
    assert model(torch.randn(1, 8000)).logits.shape == (1, 7)


def test_trainer_averages_the_loss_over_gradient_accumulation(tmp_path):
    """Our loss is a per-batch mean: the Trainer must divide by the accumulation steps, not rescale by items."""
    from transformers import Trainer, TrainingArguments

    trainer = Trainer(model=tiny_model(), args=TrainingArguments(output_dir=str(tmp_path), report_to="none"))
    assert trainer.model_accepts_loss_kwargs is False
    with pytest.raises(TypeError, match="gender_label"):
        tiny_model()(torch.randn(1, 8000), gender_label=torch.tensor([0]))  # typos are not swallowed


def test_freeze_feature_encoder_and_activation_checkpointing_train():
    model = tiny_model().train()
    model.freeze_feature_encoder()
    model.activation_checkpointing_enable()  # transformers 5 name (gradient_checkpointing_enable is deprecated)
    values, mask = padded_batch([16000, 12000])
    out = model(values, attention_mask=mask, labels=torch.tensor([0, 1]))
    out.loss.backward()
    assert all(p.grad is None for p in model.hubert.feature_extractor.parameters())
    assert model.classifier.weight.grad is not None
    assert model.hubert.encoder.layers[0].attention.q_proj.weight.grad is not None


FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint-0.1.0"


def fixture_batch():
    waves = [speechlike(1.3, seed=1), speechlike(0.7, f0=220.0, seed=2)]
    extractor = default_feature_extractor()
    return extractor(waves, sampling_rate=16000, padding=True, return_attention_mask=True, return_tensors="pt")


def test_a_checkpoint_saved_by_an_earlier_version_loads_and_answers_the_same():
    """tests/fixtures/checkpoint-0.1.0 was saved (with its outputs) before the model code was restructured."""
    expected = json.loads((FIXTURE / "expected_outputs.json").read_text())
    model = AutoModelForAudioClassification.from_pretrained(FIXTURE).eval()
    batch = fixture_batch()
    with torch.no_grad():
        out = model(batch["input_values"], attention_mask=batch["attention_mask"], window_frames=10)
    for name in ("logits", "gender_logits"):
        torch.testing.assert_close(getattr(out, name), torch.tensor(expected[name]), atol=1e-5, rtol=0)
    # windows of padding only (window_mask False) carry no answer: zeros now, whatever they held before
    valid = out.window_mask
    assert valid.sum() < valid.numel()  # the fixture batch has such windows
    expected_windows = torch.tensor(expected["window_logits"])
    torch.testing.assert_close(out.window_logits[valid], expected_windows[valid], atol=1e-5, rtol=0)
    assert not out.window_logits[~valid].any()
    assert [g.mean().item() for g in out.gmp_logits] == pytest.approx(expected["gmp_logits_mean"], abs=1e-6)


def reference_spectral_frames(wave: torch.Tensor) -> torch.Tensor:
    """40 log-mel bands, 20 MFCCs and their deltas of one clip, written out frame by frame with an FFT
    (the model computes them as one batched convolution)."""
    frames = wave.double().unfold(0, 400, 320)
    frames = (frames - frames.mean(dim=1, keepdim=True)) * torch.hamming_window(400, periodic=False).double()
    power = torch.fft.rfft(frames, n=512).abs().square()
    mel = lambda hz: 1127.0 * np.log1p(np.asarray(hz) / 700.0)  # noqa: E731
    edges = np.linspace(mel(20.0), mel(8000.0), 42)
    bins = mel(np.arange(257) * 16000 / 512)[:, None]
    filters = np.maximum(0, np.minimum((bins - edges[:-2]) / (edges[1:-1] - edges[:-2]),
                                       (edges[2:] - bins) / (edges[2:] - edges[1:-1])))  # fmt: skip
    log_mel = torch.log(power @ torch.from_numpy(filters) + 1e-10)
    cepstra = torch.from_numpy(scipy.fft.dct(log_mel.numpy(), type=2, norm="ortho", axis=1)[:, :20])
    edge = torch.cat([cepstra[:1], cepstra[:1], cepstra, cepstra[-1:], cepstra[-1:]])
    deltas = torch.stack([(edge[t + 3] - edge[t + 1] + 2 * (edge[t + 4] - edge[t])) / 10 for t in range(len(cepstra))])
    return torch.cat([log_mel, cepstra, deltas], dim=1).float()


def test_spectral_frames_are_log_mel_mfcc_and_deltas_on_the_encoder_grid():
    values, mask = padded_batch([16000, 9000, 401], seed=3)
    model = tiny_model(gender_spectral_features=True)
    frame_mask = model.encoder_model.frame_mask(values, mask.sum(dim=-1))
    batched = spectral_frames(values, 400, 320, frame_mask)
    assert batched.shape == (3, model.num_frames(16000), 80)
    for row, length in enumerate((16000, 9000, 401)):
        frames = model.num_frames(length)
        torch.testing.assert_close(batched[row, :frames], reference_spectral_frames(values[row, :length]),
                                   atol=2e-3, rtol=1e-4)  # fmt: skip


def test_spectral_gender_weights_start_at_zero_and_are_never_trained(tmp_path):
    """Until the refit sets them, a model with the spectral gender input computes and trains exactly as one
    without it (the multi-task model's gender task still teaches the encoder alone). Both are loaded the way
    the recipes load them, with ``from_pretrained``, which makes every ``nn.Parameter`` trainable again."""
    values, mask = padded_batch([16000, 12000])
    labels = {"labels": torch.tensor([0, 3]), "gender_labels": torch.tensor([1, 0])}
    tiny_model(gender_input="statistics").save_pretrained(tmp_path)
    plain = HubertForGMPEmotion.from_pretrained(tmp_path).train()
    config = HubertGMPConfig.from_pretrained(tmp_path, gender_spectral_features=True)
    spectral = HubertForGMPEmotion.from_pretrained(tmp_path, config=config).train()
    assert "spectral_gender_weight" not in dict(spectral.named_parameters())
    assert not spectral.spectral_gender_weight.any()
    grad_norms = {}
    for name, model in (("plain", plain), ("spectral", spectral)):  # two clipped AdamW steps, as the Trainer's
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for _ in range(2):
            torch.manual_seed(0)
            model(values, attention_mask=mask, **labels).loss.backward()
            grad_norms.setdefault(name, []).append(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0))
            optimizer.step()
            optimizer.zero_grad()
    assert grad_norms["spectral"] == grad_norms["plain"]
    trained = dict(plain.named_parameters())
    assert all(torch.equal(param, trained[name]) for name, param in spectral.named_parameters())
    assert not spectral.spectral_gender_weight.any()


@pytest.mark.parametrize(
    ("emotion_head", "emotion_input"), [("linear", "projected"), ("am_softmax", "projected"), ("linear", "all_layers")]
)
def test_the_emotion_refit_weights_make_a_linear_head_on_the_pooled_statistics(emotion_head, emotion_input, tmp_path):
    """The emotion refit's target: a linear head on :meth:`emotion_features` (mean and std of the projected
    frames, or of every layer: ``emotion_input``; padding ignored); an AM-Softmax head becomes linear, and stays
    so when saved and loaded."""
    model = tiny_model(pooling="statistics", emotion_head=emotion_head, emotion_input=emotion_input)
    config = model.config
    layers = config.num_hidden_layers + 1
    width = 2 * (config.classifier_proj_size if emotion_input == "projected" else layers * config.hidden_size)
    padded, mask = padded_batch([24000, 9000], seed=4)
    features = model.emotion_features(padded, mask)
    assert features.shape == (2, width) and model.embedding_size == width
    if emotion_input == "all_layers":  # each layer's mean and standard deviation, as a linear probe reads them
        frames = torch.cat(model(padded[:1], output_hidden_states=True).hidden_states, dim=-1)[0]
        probe = torch.cat([frames.mean(dim=0), frames.std(dim=0, correction=0)])
        torch.testing.assert_close(features[0], probe, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model.emotion_features(padded[1:, :9000])[0], features[1], atol=1e-5, rtol=1e-5)
    weight, bias = torch.randn(model.config.num_labels, width), torch.randn(model.config.num_labels)
    model.set_emotion_head(weight, bias)
    assert model.config.emotion_head == "linear" and isinstance(model.classifier, torch.nn.Linear)
    logits = model(padded, attention_mask=mask).logits
    torch.testing.assert_close(logits, features @ weight.T + bias)
    model.save_pretrained(tmp_path)
    torch.testing.assert_close(HubertForGMPEmotion.from_pretrained(tmp_path).eval()(padded, mask).logits, logits)
    with pytest.raises(ValueError, match="an emotion head of"):
        model.set_emotion_head(weight[:, :-1], bias)


@pytest.mark.parametrize("gender_input", ["statistics", "embedding"])
def test_spectral_gender_input_ignores_padding_and_takes_the_refit_weights(gender_input):
    model = tiny_model(gender_input=gender_input, gender_spectral_features=True)
    trained = model.gender_classifier.in_features
    weight, bias = torch.randn(2, trained + 160), torch.randn(2)
    model.set_gender_head(weight, bias)
    alone, _ = padded_batch([16000], seed=1)
    padded, mask = padded_batch([24000, 16000, 9000], seed=2)
    padded[1] = 0
    padded[1, :16000] = alone[0]
    features = model.gender_features(padded, mask)
    assert features.shape == (3, trained + 160)
    torch.testing.assert_close(model(padded, attention_mask=mask).gender_logits, features @ weight.T + bias)
    torch.testing.assert_close(model.gender_features(alone)[0], features[1], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(model(alone).gender_logits[0], model(padded, attention_mask=mask).gender_logits[1],
                               atol=1e-4, rtol=1e-5)  # fmt: skip
    with pytest.raises(ValueError, match="a gender head of"):
        tiny_model(gender_input=gender_input).set_gender_head(weight, bias)


def test_spectral_frames_stay_float32_under_autocast():
    values, mask = padded_batch([16000, 9000], seed=4)
    reference = spectral_frames(values, 400, 320)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = spectral_frames(values, 400, 320)
        model = tiny_model(gender_input="statistics", gender_spectral_features=True)
        assert model(values, attention_mask=mask).gender_logits.dtype == torch.float32
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, reference)
