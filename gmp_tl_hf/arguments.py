"""Recipe arguments (dataclasses for ``HfArgumentParser``) and config-file parsing.

Every recipe reads ``--config file.yaml`` (or ``.json``) for defaults; command-line flags override
the file. Values the paper leaves open are marked "our choice" in their help text.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml
from transformers import HfArgumentParser, TrainingArguments

from .data.corpora._common import ON_ERROR
from .gmp.kmeans import MultiScaleKMeans
from .gmp.quantizer import GENDER_MODES
from .models.configuration_hubert_gmp import (
    EMOTION_HEADS,
    EMOTION_INPUTS,
    GENDER_INPUTS,
    GMP_CONFIGS,
    GMP_LOSS_FRAMES,
    POOLING_MODES,
)

VALIDATION_MODES = ("speakers", "random", "none")
HEAD_INITS = ("from_stage1", "fresh")
ENCODER_FAMILIES = tuple(GMP_CONFIGS)  # hubert, wavlm, wav2vec2
SCALARS = {int, float, bool, str, type(None)}


@dataclass
class DataArguments:
    dataset: str = field(
        default="emodb",
        metadata={
            "help": "iemocap, emodb, ravdess, cremad, manifest (data_dir = the CSV/JSONL), audiofolder, synthetic, "
            "files (unlabelled recordings, for pre-training)"
        },
    )
    data_dir: str | None = field(default=None, metadata={"help": "Corpus folder (IEMOCAP: IEMOCAP_full_release)."})
    classes: str | None = field(
        default=None, metadata={"help": "native or iemocap4 (default: iemocap4 for IEMOCAP, native otherwise)."}
    )
    fold_protocol: str | None = field(
        default=None, metadata={"help": "loso or speakers-N (default: loso for IEMOCAP, speakers-5 otherwise)."}
    )
    fold: int = field(default=0, metadata={"help": "Test fold (0-based)."})
    validation: str = field(
        default="speakers",
        metadata={
            "help": "Validation set carved from the training folds: speakers (whole speakers, genders balanced), "
            "random (clips of the training speakers: optimistic) or none; ours."
        },
    )
    validation_size: float | None = field(
        default=None,
        metadata={"help": "Number of speakers (speakers; default 2) or fraction of clips (random; default 0.1)."},
    )
    max_duration: float | None = field(
        default=8.0, metadata={"help": "Random crop of training clips, seconds (our choice; eval uses full clips)."}
    )
    channel: int | None = field(
        default=None, metadata={"help": "Keep this channel of multi-channel audio (else average)."}
    )
    on_error: str = field(
        default="raise", metadata={"help": "Bad audio: raise (list them all) or skip (log and drop)."}
    )
    split_seed: int = field(default=0, metadata={"help": "Seed of the speaker folds and the validation split."})
    synthetic_speakers_per_gender: int = field(default=4, metadata={"help": "dataset=synthetic: speakers per gender."})
    synthetic_utterances_per_emotion: int = field(
        default=10, metadata={"help": "dataset=synthetic: clips per speaker/emotion."}
    )

    def __post_init__(self):
        if self.fold_protocol is None:
            self.fold_protocol = "loso" if self.dataset == "iemocap" else "speakers-5"
        check_types(self)
        if self.data_dir:  # one spelling per folder: ../data/x from one place and /abs/data/x match in records
            self.data_dir = os.path.abspath(self.data_dir)
        require(self, "validation", self.validation in VALIDATION_MODES, f"one of {VALIDATION_MODES}")
        require(self, "on_error", self.on_error in ON_ERROR, f"one of {ON_ERROR}")
        require(self, "max_duration", self.max_duration is None or self.max_duration > 0, "> 0 seconds or null")
        require(self, "validation_size", self.validation_size is None or self.validation_size > 0, "> 0")
        require(self, "fold", self.fold >= 0, ">= 0")


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default="facebook/hubert-base-ls960",
        metadata={
            "help": "Pre-trained encoder (Hub id or folder; HuBERT, WavLM or wav2vec 2.0, told by its config); "
            "stage 2: the stage-1 model."
        },
    )
    encoder_preset: str | None = field(
        default=None,
        metadata={"help": "tiny, small or base: start from a random encoder of that size instead (offline studies)."},
    )
    encoder_family: str = field(
        default="hubert",
        metadata={"help": "hubert, wavlm or wav2vec2: the random encoder's family (with encoder_preset only)."},
    )
    freeze_feature_encoder: bool = field(default=True, metadata={"help": "Freeze the conv feature encoder."})
    pooling: str = field(
        default="mean", metadata={"help": "mean (ours), attentive, or statistics (mean + std over frames)."}
    )
    emotion_input: str = field(
        default="projected",
        metadata={
            "help": "Frames the emotion pooling reads: projected (top layer or layer sum, projected) or all_layers "
            "(every hidden state concatenated, unprojected; with pooling=statistics a linear probe's input); ours."
        },
    )
    emotion_head: str | None = field(default=None, metadata={"help": "linear or am_softmax (default: per stage)."})
    am_margin: float = field(default=0.2, metadata={"help": "AM-Softmax margin."})
    am_scale: float = field(default=30.0, metadata={"help": "AM-Softmax scale."})
    gender_loss_weight: float | None = field(
        default=None, metadata={"help": "Weight of the gender CE (default: 1.0 for mtl, 0 otherwise)."}
    )
    gender_input: str = field(
        default="statistics",
        metadata={"help": "Gender head input: statistics (mean+std of gender_layer) or embedding; ours."},
    )
    gender_layer: int = field(default=0, metadata={"help": "Hidden layer the gender statistics come from; ours."})
    gender_spectral_features: bool = field(
        default=True,
        metadata={
            "help": "The gender head also reads log-mel/MFCC statistics of the waveform, weighted by the refit "
            "only (never by gradient); ours."
        },
    )
    refit_gender_head: bool = field(
        default=True,
        metadata={"help": "After training, refit the gender head by logistic regression on the training clips; ours."},
    )
    refit_emotion_head: bool = field(
        default=False,
        metadata={
            "help": "After training, refit the emotion head by logistic regression on the pooled embeddings of the "
            "training and validation clips (C by speaker-grouped CV; an AM-Softmax head becomes linear); ours."
        },
    )
    gmp_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the mean GMP frame CE (stage 1)."})
    gmp_loss_frames: str = field(default="all", metadata={"help": "all frames (our choice) or masked frames only."})
    use_weighted_layer_sum: bool = field(default=False, metadata={"help": "Learned weighted sum of all layers."})
    mask_time_prob: float | None = field(default=None, metadata={"help": "Override SpecAugment time masking."})
    layerdrop: float | None = field(default=None, metadata={"help": "Override LayerDrop."})
    gmp_dir: str | None = field(default=None, metadata={"help": "Stage 1: output folder of the GMP extraction."})
    head_init: str = field(
        default="from_stage1",
        metadata={
            "help": "Stage 2 emotion head: from_stage1 (class vectors start as the stage-1 head's rows) or fresh "
            "(random); ours."
        },
    )

    def __post_init__(self):
        check_types(self)
        require(self, "pooling", self.pooling in POOLING_MODES, f"one of {POOLING_MODES}")
        require(self, "emotion_input", self.emotion_input in EMOTION_INPUTS, f"one of {EMOTION_INPUTS}")
        require(self, "emotion_head", self.emotion_head in (None, *EMOTION_HEADS), f"one of {EMOTION_HEADS} or null")
        require(self, "gender_input", self.gender_input in GENDER_INPUTS, f"one of {GENDER_INPUTS}")
        require(self, "gmp_loss_frames", self.gmp_loss_frames in GMP_LOSS_FRAMES, f"one of {GMP_LOSS_FRAMES}")
        require(self, "head_init", self.head_init in HEAD_INITS, f"one of {HEAD_INITS}")
        require(self, "encoder_family", self.encoder_family in ENCODER_FAMILIES, f"one of {ENCODER_FAMILIES}")
        require(self, "am_margin", 0 <= self.am_margin < 1, "in [0, 1)")
        require(self, "am_scale", self.am_scale > 0, "> 0")
        for name in ("gender_loss_weight", "gmp_loss_weight"):
            require(self, name, getattr(self, name) is None or getattr(self, name) >= 0, ">= 0")
        require(self, "gender_layer", self.gender_layer >= 0, ">= 0")


@dataclass
class GMPArguments:
    model_name_or_path: str = field(default="", metadata={"help": "The MTL model whose features are clustered."})
    output_dir: str = field(default="gmp", metadata={"help": "Where the quantizer and labelled datasets go."})
    layer: int | None = field(
        default=None,
        metadata={"help": "Encoder layer, 1-based (default: 3/4 of the depth: 9 of 12, 18 of 24; our choice)."},
    )
    cluster_sizes: list[int] = field(default_factory=lambda: [50, 100, 500], metadata={"help": "K per scale."})
    gender_mode: str = field(default="mtl", metadata={"help": "mtl, offset or per_gender (see the README)."})
    fit_fraction: float = field(default=1.0, metadata={"help": "Fraction of training frames sampled for k-means."})
    max_fit_frames: int = field(default=500_000, metadata={"help": "Cap on the frames k-means is fitted on."})
    transductive: bool = field(
        default=False, metadata={"help": "Also cluster the (unlabelled) test-fold audio. Leaks test data."}
    )
    kmeans_max_iter: int = field(default=MultiScaleKMeans.max_iter, metadata={"help": "Lloyd iterations at most."})
    kmeans_tol: float = field(
        default=MultiScaleKMeans.tol,
        metadata={"help": "Stop a scale when a Lloyd pass improves its inertia by less (ours)."},
    )
    batch_seconds: float = field(default=160.0, metadata={"help": "Audio seconds per feature-extraction batch."})
    autocast: str | None = field(default=None, metadata={"help": "bf16 or fp16 autocast for extraction (GPU)."})
    seed: int = field(default=0, metadata={"help": "k-means seed."})
    overwrite: bool = field(
        default=False, metadata={"help": "Recompute an extraction whose folder was made with other settings."}
    )

    def __post_init__(self):
        check_types(self)
        sizes = self.cluster_sizes
        require(self, "cluster_sizes", len(sizes) > 0 and all(k >= 2 for k in sizes), "a non-empty list of K >= 2")
        require(self, "gender_mode", self.gender_mode in GENDER_MODES, f"one of {GENDER_MODES}")
        require(self, "fit_fraction", 0 < self.fit_fraction <= 1, "in (0, 1]")
        require(self, "layer", self.layer is None or self.layer >= 1, ">= 1 (1-based) or null")
        for name in ("max_fit_frames", "kmeans_max_iter", "batch_seconds"):
            require(self, name, getattr(self, name) > 0, "> 0")
        require(self, "kmeans_tol", self.kmeans_tol >= 0, ">= 0 (0: until a pass gains nothing)")


PRETRAIN_TARGETS = ("mfcc", "layer")
PRETRAIN_AUDIO = ("all", "training_folds")


@dataclass
class PretrainArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Continue pre-training this encoder (Hub id or folder; HuBERT, WavLM or wav2vec 2.0)."},
    )
    encoder_preset: str | None = field(
        default=None, metadata={"help": "tiny, small, base or large: pre-train a random encoder of that size instead."}
    )
    encoder_family: str = field(
        default="hubert", metadata={"help": "The random encoder's family (with encoder_preset)."}
    )
    targets: str = field(
        default="mfcc",
        metadata={"help": "mfcc (HuBERT iteration 1: k-means of MFCC+deltas) or layer (iteration 2: of target_model)."},
    )
    target_model: str | None = field(
        default=None, metadata={"help": "targets=layer: the encoder whose layer is clustered (e.g. iteration 1's)."}
    )
    target_layer: int | None = field(
        default=None, metadata={"help": "targets=layer: 1-based layer (default: half the depth, as fairseq's 6 of 12)."}
    )
    cluster_sizes: list[int] = field(
        default_factory=lambda: [100],
        metadata={"help": "K per target set (fairseq: 100 on MFCC, 500 on a layer); several sets = multi-scale."},
    )
    max_fit_frames: int = field(default=500_000, metadata={"help": "Cap on the frames k-means is fitted on."})
    kmeans_seed: int = field(default=0, metadata={"help": "k-means seed."})
    kmeans_tol: float = field(
        default=MultiScaleKMeans.tol,
        metadata={"help": "Stop a target set's k-means when a pass improves inertia by less (ours)."},
    )
    audio: str = field(
        default="all",
        metadata={
            "help": "all clips of the corpus, or training_folds: those outside data's test fold (task-adaptive "
            "pre-training inside a cross-validation, never hearing the test speakers)."
        },
    )
    final_dim: int = field(default=256, metadata={"help": "Projection size of the prediction head (fairseq)."})
    logit_temp: float = field(default=0.1, metadata={"help": "Cosine-logit temperature (fairseq)."})
    mask_prob: float = field(default=0.8, metadata={"help": "Span-start probability per frame x span (fairseq)."})
    mask_length: int = field(default=10, metadata={"help": "Span length in frames (fairseq)."})
    masked_weight: float = field(default=1.0, metadata={"help": "Loss weight on masked frames (fairseq)."})
    unmasked_weight: float = field(default=0.0, metadata={"help": "Loss weight on unmasked frames (fairseq)."})

    def __post_init__(self):
        check_types(self)
        require(self, "targets", self.targets in PRETRAIN_TARGETS, f"one of {PRETRAIN_TARGETS}")
        require(self, "audio", self.audio in PRETRAIN_AUDIO, f"one of {PRETRAIN_AUDIO}")
        require(self, "encoder_family", self.encoder_family in ENCODER_FAMILIES, f"one of {ENCODER_FAMILIES}")
        starts = (self.model_name_or_path is None) != (self.encoder_preset is None)
        require(self, "model_name_or_path", starts, "set, or encoder_preset set instead (exactly one of the two)")
        require(
            self, "target_model", (self.targets == "layer") == bool(self.target_model), "set exactly when targets=layer"
        )
        sizes = self.cluster_sizes
        require(self, "cluster_sizes", len(sizes) > 0 and all(k >= 2 for k in sizes), "a non-empty list of K >= 2")
        require(self, "target_layer", self.target_layer is None or self.target_layer >= 1, ">= 1 or null")
        require(self, "mask_prob", 0 < self.mask_prob <= 1, "in (0, 1]")
        require(self, "mask_length", self.mask_length >= 1, ">= 1")
        require(self, "logit_temp", self.logit_temp > 0, "> 0")
        require(self, "kmeans_tol", self.kmeans_tol >= 0, ">= 0 (0: until a pass gains nothing)")
        for name in ("masked_weight", "unmasked_weight"):
            require(self, name, getattr(self, name) >= 0, ">= 0")
        require(self, "masked_weight", self.masked_weight + self.unmasked_weight > 0, "> 0 (or unmasked_weight > 0)")


@dataclass
class RunArguments:
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Recompute a step whose folder was made with other settings or inputs (by default such a "
            "rerun is refused and the folder left untouched)."
        },
    )


class ConfigError(ValueError):
    """A setting that cannot work, found before any work starts."""


def require(arguments: Any, name: str, condition: bool, expected: str) -> None:
    """Stop at start, naming the key, when a value cannot work (not minutes later, inside training)."""
    if not condition:
        raise ConfigError(f"{name} must be {expected}, got {getattr(arguments, name)!r}")


def check_types(arguments: Any, scalars_only: bool = False) -> None:
    """Every field holds a value of its declared type (config files are not type-checked by argparse).
    ``scalars_only``: check just the number/text/flag fields (TrainingArguments converts the others)."""
    hints = get_type_hints(type(arguments))
    for item in fields(arguments):
        if not item.init or item.name not in hints:
            continue
        if scalars_only and not set(get_args(hints[item.name]) or [hints[item.name]]) <= SCALARS:
            continue
        if not _has_type(getattr(arguments, item.name), hints[item.name]):
            value = getattr(arguments, item.name)
            raise ConfigError(f"{item.name} must be {_type_name(hints[item.name])}, got {value!r}")


def _has_type(value: Any, expected: Any) -> bool:
    origin, args = get_origin(expected), get_args(expected)
    if expected is Any:
        return True
    if origin in (Union, UnionType):
        return any(_has_type(value, arg) for arg in args)
    if expected is type(None):
        return value is None
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and all(_has_type(v, args[0]) for v in value) if args else True
    if origin is dict or expected is dict:
        return isinstance(value, dict)
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, str)
    return True  # enums, classes, callables: checked where they are used


def _type_name(expected: Any) -> str:
    args = get_args(expected)
    if get_origin(expected) in (Union, UnionType):
        return " or ".join("null" if arg is type(None) else _type_name(arg) for arg in args)
    return getattr(expected, "__name__", str(expected))


def check_training_arguments(arguments: TrainingArguments) -> None:
    """The Trainer settings that would otherwise fail (or silently do nothing) deep inside training."""
    check_types(arguments, scalars_only=True)
    require(arguments, "learning_rate", arguments.learning_rate > 0, "> 0")
    require(arguments, "per_device_train_batch_size", arguments.per_device_train_batch_size > 0, "> 0")
    require(arguments, "per_device_eval_batch_size", arguments.per_device_eval_batch_size > 0, "> 0")
    trains = arguments.max_steps > 0 or arguments.num_train_epochs > 0
    require(arguments, "num_train_epochs", trains, "> 0 (or max_steps > 0)")


# TrainingArguments defaults of the recipes (each can be overridden in the config file or on the command line).
TRAINING_DEFAULTS: dict[str, Any] = {
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "load_best_model_at_end": True,
    "metric_for_best_model": "uar",
    "greater_is_better": True,
    "logging_steps": 10,
    "report_to": "none",
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 8,
    "learning_rate": 5e-5,
    "warmup_steps": 0.1,
    "num_train_epochs": 20,
    "train_sampling_strategy": "group_by_length",
    "length_column_name": "num_samples",
    "dataloader_pin_memory": False,
}


# Pre-training has no labels to select an epoch on: no evaluation, the last step is the model.
PRETRAIN_DEFAULTS: dict[str, Any] = {
    **{
        key: value
        for key, value in TRAINING_DEFAULTS.items()
        if key not in ("metric_for_best_model", "greater_is_better")
    },
    "eval_strategy": "no",
    "load_best_model_at_end": False,
    "learning_rate": 5e-4,  # fairseq's HuBERT base peak rate
    "warmup_steps": 0.08,  # fairseq: 32k of 400k steps
    "num_train_epochs": 10,
}


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` as a string; configs mean the number, as YAML 1.2 and JSON do. A key given
    twice in one mapping is an error (YAML would silently keep the last one)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    text = path.read_text()
    values = json.loads(text) if path.suffix == ".json" else load_yaml(text)
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of argument names to values")
    return values


def parse_args(
    dataclass_types: Sequence[type], argv: Sequence[str] | None = None, defaults: dict[str, Any] | None = None
) -> tuple:
    """Parse ``argv`` into the dataclasses; ``--config FILE`` supplies defaults, flags override them.

    ``defaults`` (the recipe's own, e.g. :data:`TRAINING_DEFAULTS`) rank below the config file.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    values: dict[str, Any] = dict(defaults or {})
    if "--config" in argv:
        at = argv.index("--config")
        values.update(load_config_file(argv[at + 1]))
        del argv[at : at + 2]
    parser = HfArgumentParser(dataclass_types)
    known = {action.dest: action for action in parser._actions}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown argument(s) in the config: {unknown}")
    for name in values:
        known[name].required = False
    parser.set_defaults(**values)
    return parser.parse_args_into_dataclasses(args=argv)


def split_values(values: dict[str, Any], dataclass_type: type) -> dict[str, Any]:
    """The entries of ``values`` that are fields of ``dataclass_type``."""
    names = {f.name for f in fields(dataclass_type)}
    return {key: value for key, value in values.items() if key in names}


def training_arguments(output_dir: str | Path, **overrides) -> TrainingArguments:
    """TrainingArguments with the recipe defaults, ``overrides`` on top."""
    return TrainingArguments(output_dir=str(output_dir), **{**TRAINING_DEFAULTS, **overrides})
