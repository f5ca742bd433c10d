"""Frame features of one encoder layer for a whole dataset, streamed to float16 shards on disk.

Like fairseq's ``dump_hubert_feature.py``: the encoder runs in length-sorted batches, only the
valid frames of each clip are kept, and every ``shard_frames`` frames go to ``<rank>-<n>.npy`` with a
JSON sidecar naming the utterances. A sidecar is written last, so a shard exists only when complete:
an interrupted run resumes where it stopped. Memory stays at one shard whatever the dataset size.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import Wav2Vec2FeatureExtractor

from ..data.collator import decode
from ..models.audio_io import TARGET_SAMPLING_RATE, longest_first

META_NAME = "features.json"


def model_fingerprint(model: torch.nn.Module) -> str:
    """Hash of the weights: ties features, codebooks and labels to the model that made them."""
    digest = hashlib.blake2b(digest_size=12)
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy())  # buffer, no copy
    return digest.hexdigest()


def model_device(model: torch.nn.Module) -> torch.device:
    """Where a feature model runs (a parameter-free one, such as the MFCC front-end, by its buffers)."""
    return next(itertools.chain(model.parameters(), model.buffers())).device


def clip_lengths(dataset: Dataset) -> list[int]:
    """Samples per clip at 16 kHz: the ``num_samples`` column of :func:`scan_audio`, else from ``duration``."""
    if "num_samples" in dataset.column_names:
        return list(dataset["num_samples"])
    return [round(d * TARGET_SAMPLING_RATE) for d in dataset["duration"]]


def length_sorted_batches(lengths: list[int], max_batch_samples: int, max_batch_size: int) -> list[list[int]]:
    """Indices grouped longest-first into batches of at most ``max_batch_size`` clips and
    ``max_batch_samples`` padded samples (a longer clip gets a batch of its own)."""
    batches, current = [], []
    for index in longest_first(lengths).tolist():
        if current and (len(current) == max_batch_size or lengths[current[0]] * (len(current) + 1) > max_batch_samples):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


@dataclass
class Shard:
    ids: list[str]
    lengths: list[int]
    genders: list[int]
    features: np.ndarray  # (sum(lengths), dim) float16, memory-mapped


class FrameFeatureStore:
    """Read side of a feature directory written by :func:`extract_frame_features`."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        meta_path = self.directory / META_NAME
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.directory} holds no frame features ({META_NAME} missing)")
        self.meta = json.loads(meta_path.read_text())
        self.sidecars = sorted(self.directory.glob("*.json"))
        self.sidecars = [p for p in self.sidecars if p.name != META_NAME]

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def layer(self) -> int:
        return int(self.meta["layer"])

    def _sidecar(self, path: Path) -> dict:
        return json.loads(path.read_text())

    @property
    def ids(self) -> list[str]:
        return [i for path in self.sidecars for i in self._sidecar(path)["ids"]]

    @property
    def num_frames(self) -> int:
        return sum(sum(self._sidecar(path)["lengths"]) for path in self.sidecars)

    def shards(self) -> Iterator[Shard]:
        for path in self.sidecars:
            info = self._sidecar(path)
            features = np.load(path.with_suffix(".npy"), mmap_mode="r")
            yield Shard(info["ids"], info["lengths"], info["genders"], features)

    def frames(self, fraction: float = 1.0, max_frames: int | None = None, seed: int = 0) -> StoredFrames:
        """A streamed view of ``round(fraction x frames)`` frames (at most ``max_frames``) drawn without
        replacement (cf. fairseq's ``--percent``). Nothing is read until the view is: k-means passes
        over it block by block, so memory stays at one block."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        total = self.num_frames
        count = round(fraction * total) if max_frames is None else min(round(fraction * total), max_frames)
        if count == 0:
            raise ValueError(f"no frames sampled from {self.directory} (empty store or fraction too small)")
        chosen = None if count == total else np.sort(np.random.default_rng(seed).choice(total, count, replace=False))
        selections, offset = [], 0
        for path in self.sidecars:
            info = self._sidecar(path)
            length = sum(info["lengths"])
            local = np.arange(length) if chosen is None else chosen[
                np.searchsorted(chosen, offset) : np.searchsorted(chosen, offset + length)
            ] - offset  # fmt: skip
            genders = np.repeat(np.asarray(info["genders"], dtype=np.int64), info["lengths"])[local]
            selections.append((path.with_suffix(".npy"), local, genders))
            offset += length
        return StoredFrames(self.dim, selections)

    def sample(self, fraction: float = 1.0, max_frames: int | None = None, seed: int = 0):
        """The frames of :meth:`frames` read into memory as float32, with each frame's gender id. The
        frame indices are drawn first and read from the memory-mapped shards, so memory is that of the
        sample only."""
        view = self.frames(fraction, max_frames, seed)
        return np.concatenate(list(view.blocks(1 << 16))), view.genders


class StoredFrames:
    """Frames selected from a store's shards, read block by block as float32 (a k-means ``FrameSource``)."""

    def __init__(self, dim: int, selections: list[tuple[Path, np.ndarray, np.ndarray]]):
        self.dim = dim
        self._selections = [(path, local) for path, local, _ in selections]
        self.genders = np.concatenate([genders for _, _, genders in selections])
        self._starts = np.cumsum([0, *[len(local) for _, local in self._selections]])

    @property
    def num_frames(self) -> int:
        return int(self._starts[-1])

    def of_gender(self, gender: int) -> StoredFrames:
        """The frames of this view whose clip has gender id ``gender``."""
        selections, offset = [], 0
        for path, local in self._selections:
            genders = self.genders[offset : offset + len(local)]
            selections.append((path, local[genders == gender], genders[genders == gender]))
            offset += len(local)
        return StoredFrames(self.dim, selections)

    def blocks(self, size: int) -> Iterator[np.ndarray]:
        for path, local in self._selections:
            shard = np.load(path, mmap_mode="r")  # mapped one shard at a time, released after it
            every = len(local) == len(shard)
            for start in range(0, len(local), size):
                rows = shard[start : start + size] if every else shard[local[start : start + size]]
                yield np.asarray(rows, dtype=np.float32)
            del shard

    def take(self, indices: np.ndarray) -> np.ndarray:
        """Frames at sorted positions of this view."""
        indices = np.asarray(indices)
        parts = []
        for number, (path, local) in enumerate(self._selections):
            low, high = np.searchsorted(indices, self._starts[number : number + 2])
            if high > low:
                shard = np.load(path, mmap_mode="r")
                parts.append(np.asarray(shard[local[indices[low:high] - self._starts[number]]], dtype=np.float32))
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)


def write_shard(directory: Path, name: str, frames: list[np.ndarray], ids, lengths, genders) -> None:
    """Write one shard, frames first and the sidecar last: a shard whose sidecar exists is complete."""
    temporary = directory / f".{name}.npy.tmp"
    with temporary.open("wb") as handle:
        np.save(handle, np.concatenate(frames))
    os.replace(temporary, directory / f"{name}.npy")
    sidecar = {"ids": ids, "lengths": lengths, "genders": genders}
    (directory / f".{name}.json.tmp").write_text(json.dumps(sidecar))
    os.replace(directory / f".{name}.json.tmp", directory / f"{name}.json")  # the commit point


def _prepare_directory(directory: Path, meta: dict, overwrite: bool, rank: int, wait_s: float = 600.0) -> None:
    """Process 0 checks (or, with ``overwrite``, clears) the folder and writes the settings; the
    others wait until the folder holds their settings, then resume from the committed shards."""
    meta_path = directory / META_NAME
    if rank != 0:
        deadline = time.monotonic() + wait_s
        while not (meta_path.is_file() and json.loads(meta_path.read_text()) == meta):
            if time.monotonic() > deadline:
                raise TimeoutError(f"process 0 did not prepare {directory} for these settings within {wait_s:.0f} s")
            time.sleep(0.5)
        return
    if meta_path.is_file() and not overwrite:
        existing = json.loads(meta_path.read_text())
        changed = [key for key in meta if existing.get(key) != meta[key]]
        if changed:
            raise ValueError(f"{directory} holds features of another setup ({changed} differ); use overwrite=True")
        return
    if directory.is_dir():
        for path in directory.iterdir():
            if path.suffix in (".npy", ".json") or path.name.endswith(".tmp"):
                path.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f".{META_NAME}.tmp").write_text(json.dumps(meta, indent=2))
    os.replace(directory / f".{META_NAME}.tmp", meta_path)


@torch.inference_mode()
def extract_frame_features(
    model,
    dataset: Dataset,
    output_dir: str | Path,
    layer: int,
    feature_extractor: Wav2Vec2FeatureExtractor,
    max_batch_seconds: float = 160.0,
    max_batch_size: int = 16,
    autocast_dtype: torch.dtype | None = None,
    shard_frames: int = 65536,
    channel: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    overwrite: bool = False,
) -> FrameFeatureStore:
    """Run ``model`` (a :class:`HubertForGMPEmotion`) over ``dataset`` and store layer ``layer``.

    Needs the columns ``audio``, ``id`` and ``gender`` (and ``num_samples`` from :func:`scan_audio`
    for the length sort). With ``world_size > 1`` each rank takes every ``world_size``-th batch and
    writes its own shards into the same directory. ``autocast_dtype`` (torch.bfloat16 or
    torch.float16) speeds up GPUs; features are stored as float16 either way.
    """
    if len(dataset) == 0:
        raise ValueError("cannot extract features from an empty dataset")
    directory = Path(output_dir)
    meta = {
        "layer": layer,
        "dim": model.config.hidden_size,
        "model": str(model.config.name_or_path),
        "model_fingerprint": model_fingerprint(model),
        "dataset_fingerprint": getattr(dataset, "_fingerprint", ""),
        "feature_extractor": feature_extractor.to_dict(),
    }
    _prepare_directory(directory, meta, overwrite, rank)
    done = set(FrameFeatureStore(directory).ids)
    shard_index = len(list(directory.glob(f"r{rank}-*.json")))
    ids, genders, lengths = dataset["id"], dataset["gender"], clip_lengths(dataset)
    batches = length_sorted_batches(lengths, int(max_batch_seconds * TARGET_SAMPLING_RATE), max_batch_size)
    mine = [b for b in batches[rank::world_size] if any(ids[i] not in done for i in b)]
    device = model_device(model)
    model.eval()
    buffer: list[np.ndarray] = []
    buffer_ids: list[str] = []
    buffer_lengths: list[int] = []
    buffer_genders: list[int] = []
    bar = tqdm(total=sum(len(b) for b in mine), desc=f"layer-{layer} features", unit="clip", disable=rank != 0)
    for batch in mine:
        batch = [i for i in batch if ids[i] not in done]
        rows = dataset.select(batch)
        waves = [decode(audio, channel, model.config.min_input_samples) for audio in rows["audio"]]
        inputs = feature_extractor(
            waves, sampling_rate=TARGET_SAMPLING_RATE, padding=True, return_attention_mask=True, return_tensors="pt"
        ).to(device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            hidden, frame_mask = model.layer_features(inputs["input_values"], inputs["attention_mask"], layer)
        hidden = hidden.to(torch.float16).cpu().numpy()
        frame_counts = frame_mask.sum(1).tolist()
        for position, index in enumerate(batch):
            buffer.append(hidden[position, : frame_counts[position]])
            buffer_ids.append(ids[index])
            buffer_lengths.append(frame_counts[position])
            buffer_genders.append(int(genders[index]))
        if sum(buffer_lengths) >= shard_frames:
            write_shard(directory, f"r{rank}-{shard_index:05d}", buffer, buffer_ids, buffer_lengths, buffer_genders)
            shard_index += 1
            buffer, buffer_ids, buffer_lengths, buffer_genders = [], [], [], []
        bar.update(len(batch))
    if buffer:
        write_shard(directory, f"r{rank}-{shard_index:05d}", buffer, buffer_ids, buffer_lengths, buffer_genders)
    bar.close()
    return FrameFeatureStore(directory)
