"""Where a stage starts and which heads it has: the model, its feature extractor, the stage-2 head, and the
gender and emotion heads refit on the final encoder."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, concatenate_datasets
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupKFold, cross_val_score
from transformers import (
    HubertConfig,
    HubertModel,
    PretrainedConfig,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
    set_seed,
)
from transformers.utils import logging as hf_logging

from .arguments import HEAD_INITS, ModelArguments
from .baseline import regression
from .data.collator import SERCollator
from .data.corpora import GENDERS
from .fold_data import sort_by_length
from .models.configuration_hubert_gmp import GMP_CONFIGS
from .models.modeling_hubert_gmp import GMP_MODELS, GMPEmotionMixin, default_feature_extractor, encoder_family
from .presets import encoder_preset
from .processes import process_state

logger = logging.getLogger(__name__)


EMOTION_REFIT_CS = (0.01, 0.1, 1.0, 10.0)  # the emotion refit's choices of C (ours)

STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "plain": {"emotion_head": "linear", "gender_loss_weight": 0.0},
    "mtl": {"emotion_head": "linear", "gender_loss_weight": 1.0},
    "stage1": {"emotion_head": "linear", "gender_loss_weight": 0.0},
    "stage2": {"emotion_head": "am_softmax", "gender_loss_weight": 0.0},
}


HEAD_PREFIXES = (
    "projector.",
    "classifier.",
    "gender_classifier.",
    "spectral_gender_weight",
    "gmp_heads.",
    "pooler.",
    "layer_weights",
)
# weights that belong to a head named otherwise: the spectral statistics are the gender head's second half
HEAD_OF = {"spectral_gender_weight": "gender_classifier"}


CHECKPOINT_ONLY_KEYS = ("model_type", "architectures", "auto_map", "custom_pipelines", "transformers_version")


def load_feature_extractor(name_or_path: str) -> Wav2Vec2FeatureExtractor:
    """The checkpoint's feature extractor with ``return_attention_mask=True`` (our model is exact
    under padding), or the default one when the checkpoint has none."""
    try:
        extractor = Wav2Vec2FeatureExtractor.from_pretrained(name_or_path)
    except OSError:
        logger.warning("%s has no preprocessor_config.json; using the default 16 kHz feature extractor", name_or_path)
        extractor = default_feature_extractor()
    extractor.return_attention_mask = True
    return extractor


# the stock encoder of each family, for randomly initialised "pre-trained" encoders
STOCK_ENCODERS = {
    "hubert": (HubertConfig, HubertModel),
    "wavlm": (WavLMConfig, WavLMModel),
    "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model),
}


def load_gmp_model(name_or_path: str | Path) -> GMPEmotionMixin:
    """One of our checkpoints, as the model class of its encoder family."""
    values, _ = PretrainedConfig.get_config_dict(str(name_or_path))
    return GMP_MODELS[encoder_family(values.get("model_type", "hubert"))].from_pretrained(name_or_path)


def load_feature_model(name_or_path: str | Path) -> GMPEmotionMixin:
    """An encoder checkpoint (a stock one such as ``facebook/hubert-base-ls960``, or ours) as our model class,
    for its ``layer_features``: its config made ours explicitly, the heads it lacks left unreported (unused)."""
    values, _ = PretrainedConfig.get_config_dict(str(name_or_path))
    family = encoder_family(values.get("model_type", "hubert"))
    values = {key: value for key, value in values.items() if key not in CHECKPOINT_ONLY_KEYS}
    config = GMP_CONFIGS[family](**{**values, "gmp_cluster_sizes": []})
    with quiet_loading_report():
        return GMP_MODELS[family].from_pretrained(name_or_path, config=config)


def materialize_random_encoder(preset: str, directory: str | Path, seed: int, family: str = "hubert") -> str:
    """Save a randomly initialised encoder of ``family`` and ``preset`` size as a "pre-trained"
    checkpoint, so that every stage and arm of a from-scratch study starts from the very same weights."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        torch.manual_seed(seed)
        config_class, model_class = STOCK_ENCODERS[family]
        model_class(config_class(**encoder_preset(preset))).save_pretrained(directory)
        default_feature_extractor().save_pretrained(directory)
    return str(directory)


def model_source(stage: str, model_args: ModelArguments, output_dir: Path, seed: int) -> str:
    """Where the stage starts: the given checkpoint, or (``encoder_preset``) a saved random encoder."""
    if model_args.encoder_preset and stage != "stage2":
        with process_state().main_process_first():  # one process writes it, the others load it
            return materialize_random_encoder(
                model_args.encoder_preset, output_dir / "random_init", seed, model_args.encoder_family
            )
    return model_args.model_name_or_path


def build_model(
    stage: str, source: str, model_args: ModelArguments, label_names: list[str], gmp_classes: list[int], seed: int
) -> GMPEmotionMixin:
    defaults = STAGE_DEFAULTS[stage]
    overrides: dict[str, Any] = {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: i for i, name in enumerate(label_names)},
        "gender_labels": list(GENDERS),
        "gmp_cluster_sizes": gmp_classes,
        "pooling": model_args.pooling,
        "emotion_input": model_args.emotion_input,
        "emotion_head": model_args.emotion_head or defaults["emotion_head"],
        "am_margin": model_args.am_margin,
        "am_scale": model_args.am_scale,
        "gender_loss_weight": defaults["gender_loss_weight"]
        if model_args.gender_loss_weight is None
        else model_args.gender_loss_weight,
        # the refit makes the head; a probe beside it would share the encoder's gradient clipping
        "gender_probe": not model_args.refit_gender_head,
        "gmp_loss_weight": model_args.gmp_loss_weight,
        "gmp_loss_frames": model_args.gmp_loss_frames,
        "use_weighted_layer_sum": model_args.use_weighted_layer_sum,
        "gender_input": model_args.gender_input,
        "gender_layer": model_args.gender_layer,
        "gender_spectral_features": model_args.gender_spectral_features,
    }
    for key in ("mask_time_prob", "layerdrop"):
        if getattr(model_args, key) is not None:
            overrides[key] = getattr(model_args, key)
    # the checkpoint's config becomes ours explicitly (a plain HuBERT's too), so nothing is guessed on load
    values, _ = PretrainedConfig.get_config_dict(source)
    family = encoder_family(values.get("model_type", "hubert"))
    values = {key: value for key, value in values.items() if key not in CHECKPOINT_ONLY_KEYS}
    config = GMP_CONFIGS[family](**{**values, **overrides})
    set_seed(seed)  # the new heads start the same in every run
    with quiet_loading_report():
        model, loading = GMP_MODELS[family].from_pretrained(
            source, config=config, ignore_mismatched_sizes=True, output_loading_info=True
        )
    report_loading(stage, source, loading)
    if stage == "stage2":
        initialise_stage2_head(model, model_args.head_init, seed)
    if model_args.freeze_feature_encoder:
        model.freeze_feature_encoder()
    return model


@contextmanager
def quiet_loading_report():
    """Hold back transformers' generic weight-loading table: :func:`report_loading` says what it means here.

    A filter on that one record, not a logger level: transformers runs other checks by its logger's level.
    """
    loading_logger = hf_logging.get_logger("transformers.modeling_utils")

    def not_the_report(record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in record.getMessage()

    loading_logger.addFilter(not_the_report)
    try:
        yield
    finally:
        loading_logger.removeFilter(not_the_report)


def report_loading(stage: str, source: str, loading: dict[str, list]) -> None:
    """One line for what is new or dropped by design (the heads a stage adds or removes), a warning for
    anything else (encoder weights missing or left over: a wrong checkpoint)."""
    keys = {kind: loading.get(kind, []) for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    keys["mismatched_keys"] = [entry[0] if isinstance(entry, tuple) else entry for entry in keys["mismatched_keys"]]
    expected = {
        kind: sorted({HEAD_OF.get(k.split(".")[0], k.split(".")[0]) for k in names if k.startswith(HEAD_PREFIXES)})
        for kind, names in keys.items()
    }
    other = {kind: [k for k in names if not k.startswith(HEAD_PREFIXES)] for kind, names in keys.items()}
    changes = [
        f"{what} {', '.join(heads)}"
        for what, heads in (("new heads", expected["missing_keys"]), ("dropped", expected["unexpected_keys"]),
                            ("re-initialised", expected["mismatched_keys"]))
        if heads
    ]  # fmt: skip
    logger.info("%s from %s: %s", stage, source, "; ".join(changes) or "every weight loaded")
    for kind, names in other.items():
        if names:
            logger.warning("%s from %s: encoder weights %s: %s", stage, source, kind.replace("_", " "), names[:10])


def initialise_stage2_head(model: GMPEmotionMixin, head_init: str, seed: int) -> None:
    """Stage 2's emotion head: ``from_stage1`` keeps the weight rows loaded from the stage-1 emotion head
    (the AM-Softmax class vectors start as the linear head's, its bias dropped); ``fresh`` draws new ones."""
    if head_init not in HEAD_INITS:
        raise ValueError(f"head_init must be one of {HEAD_INITS}, got {head_init!r}")
    if head_init == "fresh":
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            weight = model.classifier.weight
            weight.copy_(torch.randn(weight.shape, generator=generator) * model.config.initializer_range)
            if getattr(model.classifier, "bias", None) is not None:
                model.classifier.bias.zero_()
    logger.info("stage2: %s emotion head, initialised %s", model.config.emotion_head, head_init.replace("_", " "))


def gender_head_learns(config) -> bool:
    """Whether training updates the gender head: as a task (``gender_loss_weight > 0``) or as a probe."""
    return config.gender_loss_weight > 0 or config.gender_probe


def gender_rows(rows: Dataset) -> Dataset:
    """The clips of ``rows`` with a known gender, longest first: the rows of :func:`gender_head_inputs`'
    answer, in its order (for a caller that needs their other columns, e.g. the speaker)."""
    return sort_by_length(rows.select(np.flatnonzero(np.asarray(rows["gender"]) >= 0)))


@torch.no_grad()
def head_inputs(
    features: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    model: GMPEmotionMixin,
    rows: Dataset,
    collator: SERCollator,
    batch_size: int = 8,
) -> np.ndarray:
    """``features`` (the model's :meth:`gender_features` or :meth:`emotion_features`) of every clip of ``rows``,
    in their order, with the model in eval mode (no dropout)."""
    rows = rows.select_columns(["audio", "num_samples"])
    was_training = model.training
    model.eval()
    outputs = []
    for start in range(0, len(rows), batch_size):
        batch = collator([rows[i] for i in range(start, min(start + batch_size, len(rows)))])
        mask = batch.get("attention_mask")
        inputs = batch["input_values"].to(model.device)
        outputs.append(features(inputs, None if mask is None else mask.to(model.device)).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(outputs)


def gender_head_inputs(
    model: GMPEmotionMixin, rows: Dataset, collator: SERCollator, batch_size: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """The gender head's input (:meth:`gender_features`) for the clips of ``rows`` with a known gender, and
    their genders, in the order of :func:`gender_rows`."""
    rows = gender_rows(rows.select_columns(["audio", "gender", "num_samples"]))
    return head_inputs(model.gender_features, model, rows, collator, batch_size), np.asarray(rows["gender"])


def fit_gender_regression(
    features: np.ndarray, genders: np.ndarray, c: float = 1.0
) -> tuple[LogisticRegression, np.ndarray, np.ndarray]:
    """The refit's regression (ours): logistic regression (the recipes: C = 1) on features standardised by
    their ``mean`` and ``scale``; returns the classifier, mean and scale."""
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    return LogisticRegression(C=c, max_iter=2000).fit((features - mean) / scale, genders), mean, scale


def refit_gender_head(
    model: GMPEmotionMixin, parts: dict[str, Dataset], collator: SERCollator, batch_size: int = 8
) -> dict | None:
    """Refit the gender head by logistic regression on the final encoder's features of the clips of ``parts``
    (the recipes: training and validation speakers, every speaker outside the test fold, as the MFCC + LR
    baseline is fitted; ours).

    In a stage with the gender task the head is trained alongside the encoder, but a few epochs from
    scratch leave it far from converged; in one without it (``gender_loss_weight=0``) the recipes do not
    train it at all. A closed-form fit on the encoder the model ends with makes the gender answer valid for
    that encoder, whatever the stage's losses were. Returns what was fitted.
    """
    rows = concatenate_datasets([part.select_columns(["audio", "gender", "num_samples"]) for part in parts.values()])
    if len({gender for gender in rows["gender"] if gender >= 0}) < len(model.config.gender_labels):
        logger.warning("not every gender occurs in the %s clips; the gender head is not refit", " + ".join(parts))
        return None
    features, targets = gender_head_inputs(model, rows, collator, batch_size)
    classifier, mean, scale = fit_gender_regression(features, targets)
    model.set_gender_head(*linear_head(classifier, mean, scale))
    accuracy = float((classifier.predict((features - mean) / scale) == targets).mean())
    logger.debug("gender head refit on %d %s clips (accuracy on them %.3f)", len(targets), "+".join(parts), accuracy)
    return {
        "method": "logistic regression (C=1, standardised features)",
        "splits": list(parts),
        "clips": len(targets),
        "train_accuracy": accuracy,
    }


def linear_head(classifier: LogisticRegression, mean: np.ndarray, scale: np.ndarray) -> tuple[torch.Tensor, ...]:
    """A head's weight and bias (one row per class) that give ``classifier``'s logits on raw features, with
    the standardisation by ``mean`` and ``scale`` folded in."""
    coef, intercept = classifier.coef_, classifier.intercept_
    if coef.shape[0] == 1:  # binary: logit(class 1) - logit(class 0) = w.x + b, split symmetrically
        coef, intercept = np.concatenate([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = coef / scale
    return torch.as_tensor(weight), torch.as_tensor(intercept - weight @ mean)


def choose_emotion_c(features: np.ndarray, emotions: np.ndarray, speakers: np.ndarray) -> tuple[float, dict]:
    """The emotion refit's regularisation: the C of :data:`EMOTION_REFIT_CS` with the best UAR in a
    speaker-grouped cross-validation on the refit clips themselves (ours: no fixed value suits every
    encoder width and corpus, and the test speakers must not choose it). Returns C and each C's UAR."""
    folds = GroupKFold(n_splits=min(5, len(set(speakers))))
    scores = {
        c: float(
            cross_val_score(
                regression(c), features, emotions, groups=speakers, cv=folds, scoring="balanced_accuracy"
            ).mean()
        )
        for c in EMOTION_REFIT_CS
    }
    return max(scores, key=scores.get), scores


def refit_emotion_head(
    model: GMPEmotionMixin, parts: dict[str, Dataset], collator: SERCollator, batch_size: int = 8
) -> dict | None:
    """Refit the emotion head by logistic regression on the final encoder's pooled embeddings of the clips of
    ``parts`` (the recipes: training and validation speakers, as the MFCC + LR baseline is fitted; ours).

    A head trained by a few epochs of gradient steps beside a moving encoder reads much less from the
    embedding than a regression fitted on the embedding the model ends with (measured in the README). An
    AM-Softmax head becomes a linear one: its loss shaped the encoder, the regression answers. Returns what
    was fitted, or None (logged) where the clips are too few to choose C (fewer than two speakers or a class
    missing)."""
    rows = sort_by_length(
        concatenate_datasets(
            [part.select_columns(["audio", "emotion", "speaker", "num_samples"]) for part in parts.values()]
        )
    )
    emotions, speakers = np.asarray(rows["emotion"]), np.asarray(rows["speaker"])
    num_speakers, num_emotions = len(set(speakers)), len(set(emotions.tolist()))
    if num_speakers < 2 or num_emotions < model.config.num_labels:
        logger.warning(
            "the %s clips have %d speaker(s) and %d of %d emotions; the emotion head is not refit",
            " + ".join(parts), num_speakers, num_emotions, model.config.num_labels,
        )  # fmt: skip
        return None
    features = head_inputs(model.emotion_features, model, rows, collator, batch_size)
    c, cv_uar = choose_emotion_c(features, emotions, speakers)
    fitted = regression(c).fit(features, emotions)
    scaler, classifier = fitted[0], fitted[-1]
    replaced = model.config.emotion_head
    model.set_emotion_head(*linear_head(classifier, scaler.mean_, scaler.scale_))
    logger.info("emotion head refit on %d %s clips (C = %g by speaker-grouped CV)", len(rows), "+".join(parts), c)
    return {
        "method": "logistic regression (standardised features, C by speaker-grouped cross-validation)",
        "splits": list(parts),
        "clips": len(rows),
        "c": c,
        "cross_validation_uar": cv_uar,
        "train_uar": float(balanced_accuracy_score(emotions, fitted.predict(features))),
        "replaced_head": replaced,
    }
