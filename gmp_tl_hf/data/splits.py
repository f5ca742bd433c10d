"""Cross-validation folds and validation splits that never let a speaker cross train/test.

A fold protocol adds an integer ``fold`` column; fold ``k`` tests on the rows with ``fold == k``
and trains on the rest.

Protocols:
    ``"loso"``        leave-one-session-out (IEMOCAP: 5 folds, Ses01 ... Ses05).
    ``"speakers-N"``  N speaker-independent folds, genders balanced across folds (EmoDB:
                      ``speakers-5`` puts one female and one male speaker in every fold;
                      IEMOCAP ``speakers-10`` is the leave-one-speaker-out 10-fold split).
    ``"leave-K-speakers-out"``  folds of K speakers each (``speakers-N`` with N = speakers / K,
                      rounded up), genders balanced the same way.
"""

from __future__ import annotations

import math
import random
import re
from collections import defaultdict

import numpy as np
from datasets import Dataset, DatasetDict


def speaker_genders(dataset: Dataset) -> dict[str, int]:
    """Speaker -> gender id (-1 when unknown); a speaker with two genders is a data error."""
    genders: dict[str, int] = {}
    for speaker, gender in zip(dataset["speaker"], dataset["gender"]):
        if genders.setdefault(speaker, gender) != gender:
            raise ValueError(f"speaker {speaker!r} appears with two genders")
    return genders


def balanced_speaker_folds(dataset: Dataset, num_folds: int, seed: int = 0) -> dict[str, int]:
    """Speaker -> fold: speakers shuffled within each gender, then dealt round-robin gender by gender.

    Dealing continues across genders, so fold sizes differ by at most one speaker and each gender is
    spread as evenly as its count allows (5 female + 5 male speakers in 5 folds: one of each per fold).
    """
    genders = speaker_genders(dataset)
    if num_folds < 2 or num_folds > len(genders):
        raise ValueError(f"need 2 <= num_folds <= number of speakers ({len(genders)}), got {num_folds}")
    rng = random.Random(seed)
    ordered: list[str] = []
    for gender in (0, 1, -1):
        group = sorted(speaker for speaker, g in genders.items() if g == gender)
        rng.shuffle(group)
        ordered.extend(group)
    return {speaker: position % num_folds for position, speaker in enumerate(ordered)}


def assign_folds(dataset: Dataset, protocol: str = "loso", seed: int = 0) -> Dataset:
    """Add the ``fold`` column for ``protocol`` (see the module docstring)."""
    if "fold" in dataset.column_names:
        dataset = dataset.remove_columns("fold")
    if protocol == "loso":
        sessions = sorted(set(dataset["session"]))
        if len(sessions) < 2 or "" in sessions:
            raise ValueError("leave-one-session-out needs a session for every utterance (IEMOCAP); use speakers-N")
        index = {session: i for i, session in enumerate(sessions)}
        folds = [index[session] for session in dataset["session"]]
    elif re.fullmatch(r"speakers-\d+", protocol):
        assignment = balanced_speaker_folds(dataset, int(protocol.removeprefix("speakers-")), seed)
        folds = [assignment[speaker] for speaker in dataset["speaker"]]
    elif match := re.fullmatch(r"leave-(\d+)-speakers?-out", protocol):
        per_fold = int(match[1])
        assignment = balanced_speaker_folds(dataset, math.ceil(len(set(dataset["speaker"])) / per_fold), seed)
        folds = [assignment[speaker] for speaker in dataset["speaker"]]
    else:
        raise ValueError(f"unknown fold protocol {protocol!r}: use 'loso', 'speakers-N' or 'leave-K-speakers-out'")
    return dataset.add_column("fold", folds)


def num_folds(dataset: Dataset) -> int:
    return len(set(dataset["fold"]))


def fold_split(dataset: Dataset, fold: int) -> DatasetDict:
    """``train`` (every other fold) and ``test`` (fold ``fold``) of a dataset with a ``fold`` column."""
    if "fold" not in dataset.column_names:
        raise ValueError("the dataset has no fold column; call assign_folds first")
    folds = np.asarray(dataset["fold"])
    if fold not in set(folds.tolist()):
        raise ValueError(f"fold {fold} does not exist (folds: {sorted(set(folds.tolist()))})")
    return DatasetDict(
        train=dataset.select(np.flatnonzero(folds != fold)), test=dataset.select(np.flatnonzero(folds == fold))
    )


def split_validation(train: Dataset, mode: str = "speakers", size: float | None = None, seed: int = 0) -> DatasetDict:
    """Carve a validation set out of the training folds (model selection never sees the test fold).

    ``mode="speakers"`` (default): ``int(size)`` whole speakers (default 2), genders alternating, so
    the epoch is chosen on speakers the model never trained on, as the test fold's are.
    ``mode="random"``: a fraction ``size`` (default 0.1) of the utterances, stratified by emotion; its
    speakers also train, so model selection is optimistic. ``mode="none"``: no validation set.
    """
    if mode == "none":
        return DatasetDict(train=train)
    rng = np.random.default_rng(seed)
    if mode == "random":
        size = 0.1 if size is None else size
        if not 0 < size < 1:
            raise ValueError(f"a random validation split needs 0 < size < 1, got {size}")
        labels = np.asarray(train["emotion"])
        held_out = []
        for label in np.unique(labels):
            rows = rng.permutation(np.flatnonzero(labels == label))
            held_out.extend(rows[: max(1, round(size * len(rows)))].tolist())
        is_validation = np.zeros(len(train), dtype=bool)
        is_validation[held_out] = True
    elif mode == "speakers":
        genders = speaker_genders(train)
        count = 2 if size is None else int(size)
        if count != size and size is not None:
            raise ValueError(f"speaker validation takes a whole number of speakers, got {size}")
        if not 1 <= count < len(genders):
            raise ValueError(f"need 1 <= validation speakers < {len(genders)} training speakers, got {size}")
        by_gender: dict[int, list[str]] = defaultdict(list)
        for speaker, gender in sorted(genders.items()):
            by_gender[gender].append(speaker)
        queues = [list(rng.permutation(by_gender[g])) for g in sorted(by_gender)]
        chosen: list[str] = []
        while len(chosen) < count:
            for queue in queues:
                if queue and len(chosen) < count:
                    chosen.append(queue.pop())
        is_validation = np.isin(np.asarray(train["speaker"]), chosen)
    else:
        raise ValueError(f"validation mode must be 'random', 'speakers' or 'none', got {mode!r}")
    return DatasetDict(
        train=train.select(np.flatnonzero(~is_validation)), validation=train.select(np.flatnonzero(is_validation))
    )
