"""Pixel-set WGAN-GP: hit-set codec, observables, sampling, training/resume, two-sample test."""

import json

import numpy as np
import pytest
import torch

from trigkit.core.errors import TrigkitError
from trigkit.learn.gan_validation import two_sample_auc
from trigkit.learn.pixel_gan import (
    PixelGANSpec,
    PixelSetCritic,
    PixelSetGenerator,
    load_pixel_generator,
    observable_w1,
    train_pixel_gan,
    validation_ks,
)
from trigkit.learn.pixel_sets import PointCodec, hit_sets
from trigkit.offline.jetprep import image_observables

SHAPE = (2, 9, 9)
PIXEL = 0.1


def sparse_jets(n: int = 48, seed: int = 0) -> np.ndarray:
    """A hard central deposit plus a few soft ones anywhere, in two channels."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, *SHAPE), np.float32)
    core = rng.uniform(50, 100, n)
    share = rng.uniform(0.1, 0.9, n)
    x[:, 0, 4, 4], x[:, 1, 4, 4] = core * share, core * (1 - share)
    for i in range(n):
        for _ in range(rng.integers(1, 6)):
            r, c = rng.integers(0, 9, 2)
            x[i, rng.integers(0, 2), r, c] += rng.exponential(0.5)
    return x


def tiny_spec(**kw) -> PixelGANSpec:
    base = {"latent_dim": 4, "point_noise": 2, "hidden": 8, "layers": 1, "critic_steps": 2,
            "batch_size": 8, "epochs": 1, "seed": 3, "lr": 1e-3, "pixel_size": PIXEL}
    return PixelGANSpec(**{**base, **kw})


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_hit_sets_lists_every_hit_pixel_once():
    x = sparse_jets(10)
    x[0, 0, 0, 0] = 1e-45  # a denormal deposit is empty
    rows, cols, values, mask = hit_sets(x)
    assert mask.sum() == int((x.sum(axis=1) > 1e-6).sum())
    for i in range(len(x)):
        back = np.zeros(SHAPE, np.float32)
        back[:, rows[i, mask[i]], cols[i, mask[i]]] = values[i, mask[i]].T
        assert np.array_equal(back, np.where(x[i].sum(0) > 1e-6, x[i], 0.0))


def test_codec_round_trip_and_observables():
    x = sparse_jets(30)
    codec = PointCodec(SHAPE, PIXEL)
    codec.fit(x)
    points, mask = codec.encode(x)
    back = codec.decode(points, mask)
    np.testing.assert_allclose(back, x, rtol=2e-5, atol=1e-6)  # float32 log/exp round trip
    obs = codec.observables(points.double(), mask).numpy()
    ref = image_observables(x, PIXEL)
    np.testing.assert_allclose(np.exp(obs[:, 0] * float(codec.sum_std) + float(codec.sum_mean)),
                               ref["pt"], rtol=1e-4)
    np.testing.assert_allclose(np.expm1(2 * obs[:, 1]), ref["mass"] ** 2, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(np.exp(obs[:, 2]) - 1e-3, ref["width"], rtol=1e-3, atol=1e-5)


def test_observable_w1_is_zero_for_equal_batches_and_grows_with_a_shift():
    x = sparse_jets(32)
    codec = PointCodec(SHAPE, PIXEL)
    codec.fit(x)
    points, mask = codec.encode(x)
    perm = torch.randperm(len(points), generator=torch.Generator().manual_seed(0))
    assert float(observable_w1(codec, points[perm], mask[perm], points, mask)) == 0.0
    louder = points.clone()
    louder[..., -1] += 0.5 * mask  # every jet's log pT up by half a standard deviation
    # 0.5 from pT itself, more from the mass (proportional to pT); the width is unchanged
    assert float(observable_w1(codec, louder, mask, points, mask)) > 0.5 + 1e-3


def test_generator_samples_are_sparse_grid_images_and_seeded():
    spec = tiny_spec()
    gen = PixelSetGenerator(SHAPE, PIXEL, spec)
    gen.codec.fit(sparse_jets())
    a, b = gen.sample_images(20, seed=5), gen.sample_images(20, seed=5)
    assert a.shape == (20, *SHAPE) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, gen.sample_images(20, seed=6))
    assert (a >= 0).all()
    hits = (a.sum(axis=1) > 0).sum(axis=(1, 2))
    assert hits.max() <= gen.codec.max_points and hits.min() >= 1
    critic = PixelSetCritic(gen.codec, spec)
    z, eps, mask = gen.noise(4, torch.Generator().manual_seed(0))
    assert critic(gen(z, eps, mask), mask).shape == (4,)


def test_training_writes_best_and_last_and_resumes_exactly(tmp_path):
    x, val = sparse_jets(48), sparse_jets(24, seed=1)
    full = train_pixel_gan(x, val, tiny_spec(epochs=3), tmp_path / "full", progress=False,
                           verbose=False)
    assert full["epochs"] == 3 and full["stopped"] == "completed"
    history = json.loads((tmp_path / "full" / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert full["best_ks"] == min(r["val_ks_max_ks"] for r in history)
    train_pixel_gan(x, val, tiny_spec(epochs=1), tmp_path / "part", progress=False,
                    verbose=False)
    resumed = train_pixel_gan(x, val, tiny_spec(epochs=3), tmp_path / "part", progress=False,
                              verbose=False)
    def without_time(h):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in h]

    assert without_time(resumed["history"]) == without_time(full["history"])
    g_full = load_pixel_generator(tmp_path / "full", SHAPE, tiny_spec())
    g_part = load_pixel_generator(tmp_path / "part", SHAPE, tiny_spec())
    assert np.array_equal(g_full.sample_images(10, 1), g_part.sample_images(10, 1))
    with pytest.raises(TrigkitError, match="hidden 8 \\(now 16\\)"):
        load_pixel_generator(tmp_path / "full", SHAPE, tiny_spec(hidden=16))
    with pytest.raises(TrigkitError, match="not found"):
        load_pixel_generator(tmp_path / "none", SHAPE, tiny_spec())


def test_validation_ks_is_small_for_the_same_distribution():
    gen = PixelSetGenerator(SHAPE, PIXEL, tiny_spec())
    gen.codec.fit(sparse_jets())
    ks = validation_ks(gen, sparse_jets(200, seed=2), seed=0)
    assert set(ks) == {"pt", "mass", "width", "max_ks"} and 0 < ks["max_ks"] <= 1


def test_empty_training_images_are_refused(tmp_path):
    x = sparse_jets(8)
    x[3] = 0
    with pytest.raises(TrigkitError, match="empty"):
        train_pixel_gan(x, x, tiny_spec(), tmp_path, progress=False, verbose=False)


def test_two_sample_auc_tells_different_samples_apart():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 3)), rng.normal(size=(400, 3))
    assert abs(two_sample_auc(a, b) - 0.5) < 0.1
    assert two_sample_auc(a, b + [1.5, 0, 0]) > 0.8
    assert two_sample_auc(a, b, seed=4) == two_sample_auc(a, b, seed=4)
    imgs = sparse_jets(64)
    assert two_sample_auc(np.log1p(imgs), np.log1p(np.roll(imgs, 2, axis=3))) > 0.8  # shifted
    with pytest.raises(TrigkitError, match="same shape"):
        two_sample_auc(a, b[:, :2])
