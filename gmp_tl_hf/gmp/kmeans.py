"""Multi-scale k-means: one codebook per scale, fitted together (cf. fairseq's ``simple_kmeans``).

fairseq fits HuBERT targets with scikit-learn's ``MiniBatchKMeans`` (k-means++, n_init=20), one
codebook at a time. Here every scale is seeded by greedy k-means++ on a sample and refined with full
Lloyd iterations, and the scales share each pass over the data: one matrix product per block of
frames gives the distances to the centroids of all scales at once. Deterministic for a given seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
from tqdm.auto import tqdm

BLOCK_FRAMES = 16384  # frames per matrix product: bounds the distance matrix to BLOCK_FRAMES x sum(K)


def _as_tensor(features: np.ndarray | torch.Tensor) -> torch.Tensor:
    tensor = torch.as_tensor(features)
    if tensor.dim() != 2 or tensor.shape[0] == 0:
        raise ValueError(f"features must be a non-empty (frames, dim) array, got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError("features contain NaN or infinite values")
    return tensor.float()


def kmeans_plusplus(
    features: torch.Tensor, num_clusters: int, generator: torch.Generator, local_trials: int | None = None
) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; scikit-learn's variant with local trials)."""
    n = features.shape[0]
    trials = local_trials or 2 + int(math.log(num_clusters))
    squared = (features * features).sum(1)
    centers = torch.empty(num_clusters, features.shape[1])
    first = int(torch.randint(n, (1,), generator=generator))
    centers[0] = features[first]
    closest = (squared - 2 * features @ features[first] + squared[first]).clamp_(min=0)
    for index in range(1, num_clusters):
        weights = closest if closest.sum() > 0 else torch.ones_like(closest)
        candidates = torch.multinomial(weights, trials, replacement=True, generator=generator)
        distance = (squared[:, None] - 2 * features @ features[candidates].T + squared[candidates][None]).clamp_(min=0)
        potentials = torch.minimum(closest[:, None], distance)
        best = int(potentials.sum(0).argmin())
        closest = potentials[:, best]
        centers[index] = features[candidates[best]]
    return centers


def _assign_block(block: torch.Tensor, centroids: torch.Tensor, centroid_norms: torch.Tensor, bounds: list[int]):
    """Nearest centroid and squared distance per scale for one block of frames."""
    distances = (block * block).sum(1, keepdim=True) - 2 * block @ centroids.T + centroid_norms
    labels, minima = [], []
    for start, stop in pairwise(bounds):
        value, index = distances[:, start:stop].min(dim=1)
        labels.append(index)
        minima.append(value.clamp_(min=0))
    return labels, minima


@dataclass
class MultiScaleKMeans:
    """Codebooks for several cluster counts fitted on the same frames.

    Args:
        cluster_sizes: clusters per scale, e.g. ``(50, 100, 500)``.
        max_iter: Lloyd iterations at most.
        tol: stop a scale when its inertia improves by less than this fraction.
        init_frames: frames sampled for k-means++ seeding (per scale: max(init_frames, 20 x K), capped by N).
        n_init: seedings tried for the largest scale; each is refined by ``init_iter`` Lloyd steps on
            the seeding sample and the best is kept (a cheap stand-in for fairseq's n_init=20 full
            restarts). Smaller scales, whose tries cost less, get proportionally more (at most 10).
        seed: seeds sampling and seeding.
    """

    cluster_sizes: Sequence[int] = (50, 100, 500)
    max_iter: int = 50
    tol: float = 1e-4
    init_frames: int = 20000
    n_init: int = 3
    init_iter: int = 10
    seed: int = 0
    progress: bool = True

    def fit(self, features: np.ndarray | torch.Tensor) -> list[np.ndarray]:
        """Centroids (K_s x dim, float32) per scale."""
        x = _as_tensor(features)
        n = x.shape[0]
        too_big = [k for k in self.cluster_sizes if k > n]
        if too_big:
            raise ValueError(f"cluster sizes {too_big} exceed the {n} frames to cluster")
        if any(k < 2 for k in self.cluster_sizes):
            raise ValueError(f"every scale needs at least 2 clusters, got {list(self.cluster_sizes)}")
        generator = torch.Generator().manual_seed(self.seed)
        centroids = []
        for k in tqdm(self.cluster_sizes, desc="k-means++ seeding", disable=not self.progress, leave=False):
            sample_size = min(n, max(self.init_frames, 20 * k))
            sample = x[torch.randperm(n, generator=generator)[:sample_size]]
            best, best_score = None, math.inf
            tries = min(10, max(self.n_init, round(self.n_init * max(self.cluster_sizes) / k)))
            for _ in range(tries):
                candidate = kmeans_plusplus(sample, k, generator)
                if tries > 1:
                    candidate = self._lloyd(sample, [candidate], generator, self.init_iter, progress=False)[0]
                    score = float(_nearest(sample, [candidate])[1].sum())
                    if score >= best_score:
                        continue
                    best_score = score
                best = candidate
            centroids.append(best)
        return [c.numpy() for c in self._lloyd(x, centroids, generator, self.max_iter, self.progress)]

    def _lloyd(self, x: torch.Tensor, centroids: list[torch.Tensor], generator, max_iter: int, progress: bool):
        """Lloyd iterations for all scales at once; a scale stops when its inertia stops improving."""
        centroids = list(centroids)
        sizes = [c.shape[0] for c in centroids]
        previous = [math.inf] * len(sizes)
        active = list(range(len(sizes)))
        bar = tqdm(range(max_iter), desc="k-means (all scales)", disable=not progress, leave=False)
        for _ in bar:
            stacked = torch.cat([centroids[s] for s in active])
            norms = (stacked * stacked).sum(1)[None]
            bounds = np.cumsum([0, *[sizes[s] for s in active]]).tolist()
            sums = [torch.zeros_like(centroids[s]) for s in active]
            counts = [torch.zeros(sizes[s]) for s in active]
            inertia = [0.0] * len(active)
            for start in range(0, x.shape[0], BLOCK_FRAMES):
                block = x[start : start + BLOCK_FRAMES]
                labels, minima = _assign_block(block, stacked, norms, bounds)
                for i, (label, minimum) in enumerate(zip(labels, minima)):
                    sums[i].index_add_(0, label, block)
                    counts[i] += torch.bincount(label, minlength=counts[i].shape[0])
                    inertia[i] += float(minimum.sum())
            still_active = []
            for i, scale in enumerate(active):
                empty = (counts[i] == 0).nonzero().flatten()
                centroids[scale] = sums[i] / counts[i].clamp(min=1)[:, None]
                if len(empty):  # rare after k-means++: restart empty clusters from random frames
                    centroids[scale][empty] = x[torch.randint(x.shape[0], (len(empty),), generator=generator)]
                if len(empty) or previous[scale] - inertia[i] > self.tol * inertia[i]:
                    still_active.append(scale)
                previous[scale] = inertia[i]
            active = still_active
            bar.set_postfix(inertia_per_frame=[round(previous[s] / x.shape[0], 3) for s in range(len(sizes))])
            if not active:
                break
        return centroids


def _nearest(features: np.ndarray | torch.Tensor, codebooks: Sequence[np.ndarray | torch.Tensor]):
    """Labels and squared distances ``(frames, scales)`` of every frame's nearest centroid per codebook."""
    x = _as_tensor(features)
    centroids = [torch.as_tensor(c).float() for c in codebooks]
    if any(c.dim() != 2 or c.shape[1] != x.shape[1] for c in centroids):
        dims = [tuple(c.shape) for c in centroids]
        raise ValueError(f"features have dimension {x.shape[1]} but the codebooks have shapes {dims}")
    stacked = torch.cat(centroids)
    norms = (stacked * stacked).sum(1)[None]
    bounds = np.cumsum([0, *[c.shape[0] for c in centroids]]).tolist()
    labels = torch.empty(x.shape[0], len(centroids), dtype=torch.long)
    distances = torch.empty(x.shape[0], len(centroids))
    for start in range(0, x.shape[0], BLOCK_FRAMES):
        block_labels, block_minima = _assign_block(x[start : start + BLOCK_FRAMES], stacked, norms, bounds)
        labels[start : start + BLOCK_FRAMES] = torch.stack(block_labels, dim=1)
        distances[start : start + BLOCK_FRAMES] = torch.stack(block_minima, dim=1)
    return labels, distances


def assign(features: np.ndarray | torch.Tensor, codebooks: Sequence[np.ndarray | torch.Tensor]) -> np.ndarray:
    """Nearest centroid of every frame in every codebook: ``(frames, scales)`` int64."""
    return _nearest(features, codebooks)[0].numpy()


def inertia(features: np.ndarray | torch.Tensor, codebooks: Sequence[np.ndarray | torch.Tensor]) -> list[float]:
    """Mean squared distance of the frames to their nearest centroid, per codebook."""
    return _nearest(features, codebooks)[1].double().mean(0).tolist()
