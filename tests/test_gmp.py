"""GMP engine: multi-scale k-means, quantizer modes, streamed features, label attachment."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile
import torch
from conftest import tiny_model
from sklearn.cluster import KMeans

from gmp_tl_hf import default_feature_extractor
from gmp_tl_hf.data import SERCollator, scan_audio
from gmp_tl_hf.data.corpora import load_corpus, load_manifest
from gmp_tl_hf.gmp.features import FrameFeatureStore, extract_frame_features, length_sorted_batches, model_fingerprint
from gmp_tl_hf.gmp.kmeans import InMemoryFrames, MultiScaleKMeans, assign, inertia, resolve_device
from gmp_tl_hf.gmp.labels import add_gmp_labels
from gmp_tl_hf.gmp.quantizer import GMPQuantizer


def blobs(n=6000, dim=16, centers=30, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centers, dim)) * 4
    return (means[rng.integers(0, centers, n)] + rng.standard_normal((n, dim))).astype(np.float32)


# ---------------------------------------------------------------- k-means


def test_multiscale_kmeans_matches_sklearn_quality_and_is_deterministic():
    x = blobs()
    ours = MultiScaleKMeans((8, 30, 60), seed=1, progress=False).fit(x)
    assert [c.shape for c in ours] == [(8, 16), (30, 16), (60, 16)]
    for k, ours_inertia in zip((8, 30, 60), inertia(x, ours)):
        reference = KMeans(k, n_init=10, random_state=0).fit(x).inertia_ / len(x)
        assert ours_inertia <= reference * 1.01, (k, ours_inertia, reference)
    again = MultiScaleKMeans((8, 30, 60), seed=1, progress=False).fit(x)
    assert all(np.array_equal(a, b) for a, b in zip(ours, again))
    labels = assign(x, ours)
    assert labels.shape == (len(x), 3) and labels[:, 2].max() < 60
    direct = np.argmin(((x[:, None, :] - ours[1][None]) ** 2).sum(-1), axis=1)
    assert (labels[:, 1] == direct).mean() > 0.999  # float rounding may flip exact ties


class CountedFrames(InMemoryFrames):
    """Frames in memory that count the passes made over all of them."""

    passes = 0

    def blocks(self, size: int):
        self.passes += 1
        return super().blocks(size)


def test_a_looser_tol_makes_fewer_passes_at_about_the_same_inertia():
    """The default tol (1e-3) against 1e-4 and 0 (on until a pass gains nothing) on overlapping clusters,
    where Lloyd creeps on: fewer passes over all frames than 1e-4, inertia within 1 % of both."""
    x = blobs(n=20000, dim=16, centers=200, seed=3)
    passes, scores = {}, {}
    for tol in (0.0, 1e-4, MultiScaleKMeans.tol):
        frames = CountedFrames(torch.from_numpy(x))
        codebooks = MultiScaleKMeans((20, 50), tol=tol, warm_frames=2000, seed=0, progress=False).fit(frames)
        passes[tol], scores[tol] = frames.passes, inertia(x, codebooks)
    assert MultiScaleKMeans.tol == 1e-3
    assert passes[1e-3] < passes[1e-4], passes
    for loose, *tighter in zip(scores[1e-3], scores[1e-4], scores[0.0]):
        assert all(loose <= tight * 1.01 for tight in tighter), scores


def test_kmeans_errors():
    with pytest.raises(ValueError, match=r"cluster sizes \[500\] exceed the 100 frames"):
        MultiScaleKMeans((5, 500), progress=False).fit(blobs(n=100))
    with pytest.raises(ValueError, match="non-empty"):
        MultiScaleKMeans((5,), progress=False).fit(np.zeros((0, 4), np.float32))
    bad = blobs(n=50)
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MultiScaleKMeans((5,), progress=False).fit(bad)
    with pytest.raises(ValueError, match="features have dimension 8 but the codebooks"):
        assign(np.zeros((3, 8), np.float32), [np.zeros((4, 16), np.float32)])


def test_assignment_is_exact_nearest_centroid():
    """Every frame gets its nearest centroid of every codebook (no approximate search): checked against
    a float64 brute force; a disagreement is allowed only where two centroids tie within rounding."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5000, 24)).astype(np.float32) * 3
    codebooks = [rng.standard_normal((k, 24)).astype(np.float32) * 3 for k in (7, 40, 300)]
    labels = assign(x, codebooks)
    for scale, book in enumerate(codebooks):
        exact = ((x[:, None, :].astype(np.float64) - book[None].astype(np.float64)) ** 2).sum(-1)
        chosen = exact[np.arange(len(x)), labels[:, scale]]
        np.testing.assert_allclose(chosen, exact.min(1), rtol=1e-5)
        assert (labels[:, scale] == exact.argmin(1)).mean() > 0.999


def test_device_selection(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == torch.device("cuda") == resolve_device("auto")
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device("cuda:1") == torch.device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu") == resolve_device("auto")
    assert MultiScaleKMeans().device == "auto"  # the GPU when there is one, chosen once per fit


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_kmeans_on_cuda_matches_cpu():
    x = blobs(n=20000)
    on_cpu = MultiScaleKMeans((8, 30), progress=False, device="cpu").fit(x)
    on_gpu = MultiScaleKMeans((8, 30), progress=False, device="cuda").fit(x)
    for cpu_inertia, gpu_inertia in zip(inertia(x, on_cpu), inertia(x, on_gpu)):
        assert gpu_inertia <= cpu_inertia * 1.01


# ---------------------------------------------------------------- quantizer


@pytest.mark.parametrize("mode", ["mtl", "offset", "per_gender"])
def test_quantizer_modes_label_ranges_and_round_trip(mode, tmp_path):
    x = blobs(n=4000)
    genders = (np.arange(len(x)) % 2).astype(np.int64)
    quantizer = GMPQuantizer.fit(
        x, (6, 12), mode, frame_genders=genders, kmeans=MultiScaleKMeans(progress=False), layer=3, feature_model="m"
    )
    factor = 1 if mode == "mtl" else 2
    assert quantizer.num_classes == [6 * factor, 12 * factor]
    female, male = quantizer.assign(x[:500], gender=0), quantizer.assign(x[:500], gender=1)
    assert female.shape == (500, 2)
    if mode == "mtl":
        np.testing.assert_array_equal(female, male)
    else:
        assert female[:, 0].max() < 6 and male[:, 0].min() >= 6 and male[:, 1].max() < 24
        if mode == "offset":
            np.testing.assert_array_equal(male - female, np.tile([6, 12], (500, 1)))
    quantizer.save_pretrained(tmp_path)
    loaded = GMPQuantizer.from_pretrained(tmp_path)
    assert loaded.fingerprint() == quantizer.fingerprint()
    assert (loaded.layer, loaded.gender_mode, loaded.num_classes) == (3, mode, quantizer.num_classes)
    np.testing.assert_array_equal(loaded.assign(x, gender=1), quantizer.assign(x, gender=1))


def test_quantizer_errors():
    x = blobs(n=400)
    quantizer = GMPQuantizer.fit(x, (4,), "offset", kmeans=MultiScaleKMeans(progress=False))
    with pytest.raises(ValueError, match="needs each utterance's gender"):
        quantizer.assign(x, gender=None)
    with pytest.raises(ValueError, match=r"features must be \(frames, 16\)"):
        quantizer.assign(np.zeros((5, 3), np.float32), gender=0)
    with pytest.raises(ValueError, match="needs the gender of every frame"):
        GMPQuantizer.fit(x, (4,), "per_gender", kmeans=MultiScaleKMeans(progress=False))


# ---------------------------------------------------------------- features on disk


@pytest.fixture
def clips(tmp_path):
    """Clips of awkward lengths around frame boundaries (400 = one frame; +320 per frame)."""
    lengths = [400, 401, 719, 720, 721, 1039, 16000, 16321, 23999, 8000]
    rng = np.random.default_rng(0)
    lines = ["path,emotion,speaker,gender"]
    for i, length in enumerate(lengths):
        soundfile.write(
            tmp_path / f"c{i}.wav", (0.1 * rng.standard_normal(length)).astype(np.float32), 16000, subtype="FLOAT"
        )
        lines.append(f"c{i}.wav,{'ab'[i % 2]},s{i % 4},{'fm'[i % 2]}")
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    return scan_audio(load_manifest(tmp_path / "list.csv")), lengths


def test_length_sorted_batches():
    batches = length_sorted_batches([5, 100, 20, 80, 90, 10], max_batch_samples=200, max_batch_size=3)
    assert batches == [[1, 4], [3, 2], [5, 0]]
    assert sorted(i for b in batches for i in b) == list(range(6))


def test_extract_store_sample_and_resume(clips, tmp_path):
    dataset, lengths = clips
    model = tiny_model(num_hidden_layers=3)
    fe = default_feature_extractor()
    store = extract_frame_features(model, dataset, tmp_path / "f", 2, fe, shard_frames=60, max_batch_size=3)
    expected = {row["id"]: model.config.num_frames(n) for row, n in zip(dataset, lengths)}
    assert sorted(store.ids) == sorted(expected) and store.num_frames == sum(expected.values())
    assert len(store.sidecars) > 1 and store.dim == 32 and store.layer == 2
    # each stored utterance equals the layer-2 features of the clip run alone
    shard = next(store.shards())
    offset = 0
    for utterance, length in zip(shard.ids, shard.lengths):
        row = dataset[dataset["id"].index(utterance)]
        wave = fe(
            np.asarray(soundfile.read(row["audio"]["path"])[0], np.float32), sampling_rate=16000, return_tensors="pt"
        )
        alone, _ = model.layer_features(wave["input_values"], layer=2)
        np.testing.assert_allclose(
            shard.features[offset : offset + length], alone[0].detach().numpy(), atol=2e-3
        )  # float16
        offset += length
    features, genders = store.sample(fraction=0.5, seed=0)
    assert len(features) == round(0.5 * store.num_frames) and set(genders) <= {0, 1}
    np.testing.assert_array_equal(store.sample(0.5, seed=0)[0], features)
    # a capped sample is drawn by index from the memory-mapped shards: every row is a stored frame
    # with its own clip's gender
    capped, capped_genders = store.sample(max_frames=7, seed=1)
    every = np.concatenate([np.asarray(shard.features, np.float32) for shard in store.shards()])
    every_genders = np.concatenate([np.repeat(shard.genders, shard.lengths) for shard in store.shards()])
    rows = [int(np.flatnonzero((every == row).all(axis=1))[0]) for row in capped]
    assert len(capped) == 7 and len(set(rows)) == 7
    np.testing.assert_array_equal(every_genders[rows], capped_genders)
    # interrupted run: drop the last committed shard, run again, only that shard is recomputed
    last = store.sidecars[-1]
    lost = set(FrameFeatureStore(tmp_path / "f")._sidecar(last)["ids"])
    last.unlink()
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "f").glob("*.npy") if p.stem != last.stem}
    resumed = extract_frame_features(model, dataset, tmp_path / "f", 2, fe, shard_frames=60, max_batch_size=3)
    assert sorted(resumed.ids) == sorted(expected)
    assert all((tmp_path / "f" / name).stat().st_mtime_ns == t for name, t in before.items())
    assert lost
    with pytest.raises(ValueError, match=r"features of another setup \(\['layer'\] differ\)"):
        extract_frame_features(model, dataset, tmp_path / "f", 1, fe)
    assert extract_frame_features(model, dataset, tmp_path / "f", 1, fe, overwrite=True).layer == 1


def test_two_ranks_split_the_work(clips, tmp_path):
    dataset, _ = clips
    model, fe = tiny_model(), default_feature_extractor()
    for rank in (0, 1):
        extract_frame_features(model, dataset, tmp_path / "f", 1, fe, max_batch_size=2, rank=rank, world_size=2)
    store = FrameFeatureStore(tmp_path / "f")
    assert sorted(store.ids) == sorted(dataset["id"])
    assert {p.name[:2] for p in store.sidecars} == {"r0", "r1"}


def test_memory_does_not_grow_with_the_dataset(tmp_path):
    """Peak traced (numpy) memory for 4x the clips stays flat: frames go to disk shard by shard."""
    rng = np.random.default_rng(0)
    lines = ["path,emotion"]
    for i in range(96):
        soundfile.write(tmp_path / f"c{i}.wav", (0.1 * rng.standard_normal(32000)).astype(np.float32), 16000)
        lines.append(f"c{i}.wav,a")
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    everything = scan_audio(load_manifest(tmp_path / "list.csv"))
    model, fe = tiny_model(hidden_size=512, num_attention_heads=8, intermediate_size=64), default_feature_extractor()
    peaks = []
    for count in (24, 96):
        tracemalloc.start()
        extract_frame_features(
            model, everything.select(range(count)), tmp_path / f"f{count}", 2, fe, shard_frames=400, max_batch_size=4
        )
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    frames_bytes = 96 * 99 * 512 * 2  # what keeping every float16 frame of the large run would cost
    assert peaks[1] < 1.25 * peaks[0] and peaks[1] < frames_bytes / 2, (peaks, frames_bytes)
    assert (
        len(FrameFeatureStore(tmp_path / "f96").sidecars) >= 4 * len(FrameFeatureStore(tmp_path / "f24").sidecars) - 1
    )


def test_streamed_frames_fit_like_frames_in_memory(clips, tmp_path):
    """k-means reads a store block by block (memory: one block) and gets what it gets from the same
    frames in memory; per-gender codebooks come from the store's own gender ids."""
    dataset, _ = clips
    fe = default_feature_extractor()
    store = extract_frame_features(tiny_model(), dataset, tmp_path / "f", 1, fe, shard_frames=60)
    features, genders = store.sample(fraction=0.8, seed=2)
    view = store.frames(fraction=0.8, seed=2)
    assert view.num_frames == len(features) and view.dim == features.shape[1]
    np.testing.assert_array_equal(np.concatenate(list(view.blocks(17))), features)
    np.testing.assert_array_equal(view.take(np.array([0, 5, len(features) - 1])), features[[0, 5, -1]])
    np.testing.assert_array_equal(view.genders, genders)
    np.testing.assert_array_equal(np.concatenate(list(view.of_gender(1).blocks(50))), features[genders == 1])
    kmeans = MultiScaleKMeans((3, 5), progress=False)
    for streamed, in_memory in zip(kmeans.fit(view), kmeans.fit(features)):
        np.testing.assert_allclose(streamed, in_memory, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(assign(view, kmeans.fit(view)), assign(features, kmeans.fit(view)))
    by_store = GMPQuantizer.fit(view, (3,), "per_gender", kmeans=kmeans)
    by_array = GMPQuantizer.fit(features, (3,), "per_gender", genders, kmeans=kmeans)
    for name in ("female", "male"):
        np.testing.assert_allclose(by_store.codebooks[name][0], by_array.codebooks[name][0], rtol=1e-4, atol=1e-5)


def test_empty_dataset_is_an_error(clips, tmp_path):
    dataset, _ = clips
    with pytest.raises(ValueError, match="empty dataset"):
        extract_frame_features(tiny_model(), dataset.select([]), tmp_path / "f", 1, default_feature_extractor())


# ---------------------------------------------------------------- labels


@pytest.mark.parametrize("mode", ["mtl", "offset"])
def test_labels_exist_for_every_frame_and_align(clips, tmp_path, mode):
    dataset, lengths = clips
    model, fe = tiny_model(num_hidden_layers=3), default_feature_extractor()
    store = extract_frame_features(model, dataset, tmp_path / "f", 2, fe)
    features, genders = store.sample()
    quantizer = GMPQuantizer.fit(
        features, (3, 5), mode, genders, kmeans=MultiScaleKMeans(progress=False), layer=2,
        feature_model_fingerprint=model_fingerprint(model),
    )  # fmt: skip
    labelled = add_gmp_labels(dataset, model, quantizer, fe, batch_size=4)
    assert labelled["id"] == dataset["id"]
    for row, length in zip(labelled, lengths):
        labels = np.asarray(row["gmp_labels"])
        assert labels.shape == (model.config.num_frames(length), 2)
        wave = fe(
            np.asarray(soundfile.read(row["audio"]["path"])[0], np.float32), sampling_rate=16000, return_tensors="pt"
        )
        alone, _ = model.layer_features(wave["input_values"], layer=2)
        expected = quantizer.assign(alone[0].detach().numpy(), row["gender"])
        assert (labels == expected).mean() > 0.97  # batch padding is exact; only float ties may flip
        assert labels[:, 0].max() < quantizer.num_classes[0]
    batch = SERCollator(
        fe, model.config.__class__(**{**model.config.to_dict(), "gmp_cluster_sizes": quantizer.num_classes})
    )([labelled[i] for i in range(4)])
    valid = batch["gmp_labels"][..., 0] != -100
    assert valid.sum(1).tolist() == [model.config.num_frames(n) for n in lengths[:4]]
    # the labels feed the model as they are
    model_for_labels = tiny_model(num_hidden_layers=3, gmp_cluster_sizes=quantizer.num_classes)
    assert model_for_labels(**batch).loss is not None
    other = tiny_model(seed=5, num_hidden_layers=3)
    with pytest.raises(ValueError, match="fitted on features of another model"):
        add_gmp_labels(dataset, other, quantizer, fe)


def test_labels_on_real_emodb(emodb_dir, tmp_path):
    dataset = scan_audio(load_corpus("emodb", emodb_dir).select(range(0, 535, 45)))
    model, fe = tiny_model(), default_feature_extractor()
    store = extract_frame_features(model, dataset, tmp_path / "f", 1, fe)
    assert store.num_frames == sum(model.config.num_frames(n) for n in dataset["num_samples"])
    quantizer = GMPQuantizer.fit(store.sample()[0], (4, 8), kmeans=MultiScaleKMeans(progress=False), layer=1)
    labelled = add_gmp_labels(dataset, model, quantizer, fe)
    for row in labelled:
        assert len(row["gmp_labels"]) == model.config.num_frames(row["num_samples"])
        assert min(min(frame) for frame in row["gmp_labels"]) >= 0
    batch = SERCollator(fe, model.config)([labelled[i] for i in range(len(labelled))])
    frames = batch["gmp_labels"].shape[1]
    assert frames == model.config.num_frames(batch["input_values"].shape[1])
    padded = (
        torch.arange(frames)[None, :]
        >= torch.tensor([model.config.num_frames(n) for n in labelled["num_samples"]])[:, None]
    )
    assert (batch["gmp_labels"][padded] == -100).all() and (batch["gmp_labels"][~padded] >= 0).all()
