"""Corpus loaders. Each returns a ``datasets.Dataset`` with the columns ``id``, ``audio`` (path-based),
``emotion`` and ``gender`` (ClassLabel), ``speaker``, ``session`` and ``duration``."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset

from . import cremad, emodb, iemocap, ravdess
from ._common import GENDERS, IEMOCAP4, LabelMap, Utterance, build_dataset, class_counts, report_errors
from .cremad import load_cremad
from .emodb import load_emodb
from .generic import load_audiofolder, load_files, load_manifest
from .iemocap import load_iemocap
from .ravdess import load_ravdess

# The 4-class mapping of each corpus onto IEMOCAP's classes (neutral, happy, angry, sad).
TO_IEMOCAP4: dict[str, LabelMap] = {
    "iemocap": iemocap.STANDARD_4CLASS,
    "emodb": emodb.TO_IEMOCAP4,
    "ravdess": ravdess.TO_IEMOCAP4,
    "cremad": cremad.TO_IEMOCAP4,
}
CORPORA = ("iemocap", "emodb", "ravdess", "cremad", "manifest", "audiofolder", "files")


def load_corpus(name: str, data_dir: str | Path, classes: str | None = None, on_error: str = "raise") -> Dataset:
    """Load corpus ``name`` from ``data_dir`` (a manifest file for ``"manifest"``).

    ``classes``: ``"iemocap4"`` maps the corpus onto the IEMOCAP 4 classes, ``"native"`` keeps the
    corpus's own labels; the default is each corpus's usual setting (IEMOCAP: the standard 4
    classes with excited merged into happy; the others: native).
    """
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; choose from {CORPORA}")
    classes = classes or ("iemocap4" if name == "iemocap" else "native")
    if classes not in ("native", "iemocap4"):
        raise ValueError(f"classes must be 'native' or 'iemocap4', got {classes!r}")
    if name == "iemocap":
        label_map = iemocap.STANDARD_4CLASS if classes == "iemocap4" else None
        return load_iemocap(data_dir, label_map=label_map, on_error=on_error)
    if name in ("manifest", "audiofolder", "files"):
        if classes == "iemocap4":
            raise ValueError(f"classes='iemocap4' needs a known corpus; give {name} a label_map in Python instead")
        loader = {"manifest": load_manifest, "audiofolder": load_audiofolder, "files": load_files}[name]
        return loader(data_dir, on_error=on_error)
    loaders = {"emodb": load_emodb, "ravdess": load_ravdess, "cremad": load_cremad}
    label_map = TO_IEMOCAP4[name] if classes == "iemocap4" else None
    return loaders[name](data_dir, label_map=label_map, on_error=on_error)


__all__ = [
    "CORPORA",
    "GENDERS",
    "IEMOCAP4",
    "TO_IEMOCAP4",
    "Utterance",
    "build_dataset",
    "class_counts",
    "load_audiofolder",
    "load_corpus",
    "load_cremad",
    "load_emodb",
    "load_iemocap",
    "load_manifest",
    "load_ravdess",
    "report_errors",
]
