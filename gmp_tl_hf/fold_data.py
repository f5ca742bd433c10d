"""The rows of one fold: the corpus with its folds, train / validation / test checked, in a stable order."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from datasets import DatasetDict

from .arguments import DataArguments
from .data.collator import scan_audio
from .data.corpora import load_corpus, load_manifest
from .data.splits import assign_folds, fold_split, split_validation
from .data.synthetic import CorpusSpec, synthesize_corpus
from .models.audio_io import longest_first
from .processes import process_state

logger = logging.getLogger(__name__)


def load_data(data_args: DataArguments):
    """The whole corpus with a ``fold`` column."""
    if data_args.dataset == "synthetic":
        spec = CorpusSpec(data_args.synthetic_speakers_per_gender, data_args.synthetic_utterances_per_emotion)
        root = data_args.data_dir or str(Path.home() / ".cache" / "gmp_tl_hf" / f"synthetic-{spec.fingerprint()}")
        with process_state().main_process_first():  # one process writes the corpus, the others reuse it
            manifest = synthesize_corpus(root, spec)
        dataset = load_manifest(manifest, on_error=data_args.on_error)
    else:
        if not data_args.data_dir:
            raise ValueError(f"--data_dir is needed for dataset {data_args.dataset!r}")
        dataset = load_corpus(data_args.dataset, data_args.data_dir, data_args.classes, data_args.on_error)
    return assign_folds(dataset, data_args.fold_protocol, seed=data_args.split_seed)


def prepare_splits(data_args: DataArguments) -> DatasetDict:
    """train / validation (from the training folds) / test (the held-out fold), audio checked."""
    folds = fold_split(load_data(data_args), data_args.fold)
    parts = split_validation(folds["train"], data_args.validation, data_args.validation_size, data_args.split_seed)
    parts["test"] = folds["test"]
    return DatasetDict(
        {
            name: scan_audio(part, data_args.on_error, data_args.channel, desc=f"checking {name} audio")
            for name, part in parts.items()
        }
    )


def split_signature(data_args: DataArguments) -> dict[str, Any]:
    """The data arguments that decide the train/validation/test rows (stage 1 must match extraction)."""
    keys = ("dataset", "data_dir", "classes", "fold_protocol", "fold", "validation", "validation_size", "split_seed")
    return {key: getattr(data_args, key) for key in keys}


def missing_classes(splits: DatasetDict, label_names: list[str]) -> list[str]:
    """A class absent from a split: training cannot learn it, or the test cannot measure it (UAR then
    averages the classes present). Said in the run's record, not only on the console."""
    found = []
    for name in ("train", "validation", "test"):
        if name in splits:
            absent = sorted(set(label_names) - {label_names[i] for i in set(splits[name]["emotion"])})
            if absent:
                found.append(f"no {name} clips of {absent}")
    return found


def sort_by_length(dataset):
    return dataset.select(longest_first(dataset["num_samples"]))
