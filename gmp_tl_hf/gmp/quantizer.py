"""GMPQuantizer: the multi-scale codebooks that turn frame features into gender-aware pseudo-labels.

The paper does not say how gender enters the pseudo-labels, so it is an explicit choice:

``"mtl"`` (default)
    Features come from the emotion + gender multi-task model, so gender is already in them;
    labels are plain cluster ids (K classes per scale).
``"offset"``
    label = cluster + K x gender: one codebook, gender-specific classes (2K per scale).
``"per_gender"``
    separate codebooks fitted on each gender's frames; label = cluster + K x gender (2K per scale).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from .features import StoredFrames
from .kmeans import MultiScaleKMeans, assign

GENDER_MODES = ("mtl", "offset", "per_gender")
CONFIG_NAME = "gmp_quantizer.json"
WEIGHTS_NAME = "gmp_quantizer.safetensors"


@dataclass
class GMPQuantizer:
    """Codebooks per scale (per gender group for ``"per_gender"``) and where their features came from.

    Attributes:
        codebooks: group -> one ``(K, dim)`` float32 array per scale; the group is ``"all"``, or
            ``"female"`` and ``"male"`` for ``gender_mode="per_gender"``.
        cluster_sizes: K per scale.
        gender_mode: see the module docstring.
        layer: encoder layer the features were taken from (1-based).
        feature_model: name or path of the model that produced the features.
        feature_model_fingerprint: hash of that model's weights (labels are only valid for it).
    """

    codebooks: dict[str, list[np.ndarray]]
    cluster_sizes: tuple[int, ...]
    gender_mode: str = "mtl"
    layer: int = 9
    feature_model: str = ""
    feature_model_fingerprint: str = ""
    genders: tuple[str, ...] = field(default=("female", "male"))

    def __post_init__(self):
        self.cluster_sizes = tuple(int(k) for k in self.cluster_sizes)
        if self.gender_mode not in GENDER_MODES:
            raise ValueError(f"gender_mode must be one of {GENDER_MODES}, got {self.gender_mode!r}")
        groups = ["all"] if self.gender_mode != "per_gender" else list(self.genders)
        if sorted(self.codebooks) != sorted(groups):
            raise ValueError(
                f"gender_mode={self.gender_mode!r} needs codebooks for {groups}, got {sorted(self.codebooks)}"
            )
        for group, books in self.codebooks.items():
            if [len(book) for book in books] != list(self.cluster_sizes):
                raise ValueError(
                    f"codebooks of {group!r} have {[len(b) for b in books]} centroids, not {self.cluster_sizes}"
                )
        self.codebooks = {
            g: [np.ascontiguousarray(b, dtype=np.float32) for b in books] for g, books in self.codebooks.items()
        }

    @property
    def dim(self) -> int:
        return next(iter(self.codebooks.values()))[0].shape[1]

    @property
    def num_classes(self) -> list[int]:
        """Classes per scale: the sizes of the model's frame heads (``config.gmp_cluster_sizes``)."""
        factor = 1 if self.gender_mode == "mtl" else len(self.genders)
        return [factor * k for k in self.cluster_sizes]

    @classmethod
    def fit(
        cls,
        features: np.ndarray | StoredFrames,
        cluster_sizes: Sequence[int] = (50, 100, 500),
        gender_mode: str = "mtl",
        frame_genders: np.ndarray | None = None,
        kmeans: MultiScaleKMeans | None = None,
        **metadata,
    ) -> GMPQuantizer:
        """Fit the codebooks on ``features``: a ``(frames, dim)`` array, or frames streamed from a
        feature store (:meth:`FrameFeatureStore.frames`), which know their genders. For an array,
        ``"per_gender"`` needs ``frame_genders`` (0/1 per frame). ``metadata``: ``layer``,
        ``feature_model``, ``feature_model_fingerprint``."""
        kmeans = kmeans or MultiScaleKMeans(tuple(cluster_sizes))
        kmeans.cluster_sizes = tuple(cluster_sizes)
        if gender_mode != "per_gender":
            return cls({"all": kmeans.fit(features)}, tuple(cluster_sizes), gender_mode, **metadata)
        streamed = isinstance(features, StoredFrames)
        if not streamed and (frame_genders is None or len(frame_genders) != len(features)):
            raise ValueError("gender_mode='per_gender' needs the gender of every frame (frame_genders)")
        genders = metadata.pop("genders", ("female", "male"))
        codebooks = {}
        for index, name in enumerate(genders):
            subset = features.of_gender(index) if streamed else features[np.asarray(frame_genders) == index]
            count = subset.num_frames if streamed else len(subset)
            if count < max(cluster_sizes):
                raise ValueError(f"only {count} {name} frames to fit {max(cluster_sizes)} clusters per gender")
            codebooks[name] = kmeans.fit(subset)
        return cls(codebooks, tuple(cluster_sizes), gender_mode, genders=tuple(genders), **metadata)

    def assign(self, features: np.ndarray, gender: int | None = None) -> np.ndarray:
        """GMP labels ``(frames, scales)`` for one utterance's frames; ``gender`` is the utterance's
        gender id (needed by ``"offset"`` and ``"per_gender"``)."""
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"features must be (frames, {self.dim}) for these codebooks, got {features.shape}")
        if self.gender_mode == "mtl":
            return assign(features, self.codebooks["all"])
        if gender is None or not 0 <= int(gender) < len(self.genders):
            raise ValueError(
                f"gender_mode={self.gender_mode!r} needs each utterance's gender "
                f"(0..{len(self.genders) - 1}), got {gender}"
            )
        group = "all" if self.gender_mode == "offset" else self.genders[int(gender)]
        clusters = assign(features, self.codebooks[group])
        return clusters + int(gender) * np.asarray(self.cluster_sizes)[None, :]

    def fingerprint(self) -> str:
        """Content hash: codebooks and settings (for dataset caching)."""
        digest = hashlib.sha256(json.dumps(self._config(), sort_keys=True).encode())
        for group in sorted(self.codebooks):
            for book in self.codebooks[group]:
                digest.update(book.tobytes())
        return digest.hexdigest()[:16]

    def _config(self) -> dict:
        config = asdict(self)
        del config["codebooks"]
        config["cluster_sizes"] = list(self.cluster_sizes)
        config["genders"] = list(self.genders)
        config["num_classes"] = self.num_classes
        return config

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``gmp_quantizer.json`` and ``gmp_quantizer.safetensors`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"{group}.scale{i}": book for group, books in self.codebooks.items() for i, book in enumerate(books)}
        save_file(tensors, str(directory / WEIGHTS_NAME))
        (directory / CONFIG_NAME).write_text(json.dumps(self._config(), indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> GMPQuantizer:
        directory = Path(directory)
        if not (directory / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"no {CONFIG_NAME} in {directory}")
        config = json.loads((directory / CONFIG_NAME).read_text())
        config.pop("num_classes", None)
        tensors = load_file(str(directory / WEIGHTS_NAME))
        groups = sorted({name.split(".")[0] for name in tensors})
        codebooks = {g: [tensors[f"{g}.scale{i}"] for i in range(len(config["cluster_sizes"]))] for g in groups}
        config["genders"] = tuple(config["genders"])
        return cls(codebooks=codebooks, **config)
