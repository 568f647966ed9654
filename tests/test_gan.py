"""WGAN-GP on tiny images: networks, gradient penalty, training/resume, sampling, validation."""

import json

import numpy as np
import pytest
import torch

from trigkit.core.errors import TrigkitError
from trigkit.learn.gan import (
    Critic,
    GANSpec,
    Generator,
    gradient_penalty,
    load_generator,
    sample,
    train_wgan_gp,
)
from trigkit.learn.gan_validation import MEAN_IMAGE, PIXELS, compare_samples, plot_gan_validation

SHAPE = (1, 8, 8)


def tiny_images(n: int = 40, seed: int = 0) -> np.ndarray:
    """Sparse non-negative 'jets': an exponential core plus a few random hot pixels."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, *SHAPE), np.float32)
    x[:, 0, 3:5, 3:5] = rng.exponential(5.0, size=(n, 2, 2))
    hot = rng.random((n, *SHAPE)) < 0.1
    x[hot] += rng.exponential(1.0, size=hot.sum())
    return x


def tiny_spec(**kw) -> GANSpec:
    base = {"latent_dim": 4, "critic_steps": 2, "batch_size": 8, "epochs": 1, "seed": 3,
            "width": 4, "lr": 1e-3}
    return GANSpec(**{**base, **kw})


def observables(images: np.ndarray) -> dict[str, np.ndarray]:
    return {"sum": images.sum(axis=(1, 2, 3)), "max": images.reshape(len(images), -1).max(1)}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_gradient_penalty_linear_critic():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(6, *SHAPE, generator=g), torch.rand(6, *SHAPE, generator=g)
    w = torch.randn(64, generator=g)
    w /= w.norm()

    def linear(scale):
        return lambda x: (x.flatten(1) * (scale * w)).sum(dim=1)

    assert float(gradient_penalty(linear(1.0), real, fake)) == pytest.approx(0.0, abs=1e-10)
    assert float(gradient_penalty(linear(2.0), real, fake)) == pytest.approx(1.0, rel=1e-5)
    assert float(gradient_penalty(linear(0.5), real, fake)) == pytest.approx(0.25, rel=1e-5)
    critic = Critic(SHAPE, width=4)
    gradient_penalty(critic, real, fake).backward()
    weights = [p for name, p in critic.named_parameters() if name.endswith("weight")]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights)
    with pytest.raises(TrigkitError, match="differ in shape"):
        gradient_penalty(critic, real, fake[:3])


@pytest.mark.parametrize("shape", [(2, 25, 25), (2, 40, 40), (1, 8, 8), (1, 7, 9)])
def test_networks_fit_every_shape(shape):
    torch.manual_seed(0)
    gen, critic = Generator(8, shape, width=4), Critic(shape, width=4)
    x = gen(torch.randn(3, 8))
    assert x.shape == (3, *shape)
    assert (x >= 0).all() and (x == 0).any()  # ReLU output: non-negative, exact zeros
    assert critic(x).shape == (3,)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in critic.modules())
    assert Generator(8, shape[1:], width=4)(torch.randn(2, 8)).shape == (2, 1, *shape[1:])


def test_one_epoch_writes_checkpoint_and_history(tmp_path):
    out = tmp_path / "gan"
    summary = train_wgan_gp(tiny_images(), tiny_spec(), out, progress=True, verbose=False)
    assert summary["stopped"] == "completed" and summary["epochs"] == 1
    assert (out / "last.pt").is_file()
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1
    row = history[0]
    for key in ("critic_loss", "generator_loss", "wasserstein", "gp"):
        assert np.isfinite(row[key])
    assert row["generator_steps"] == 2 and row["critic_steps"] == 4  # 5 batches of 8 // 2
    ckpt = torch.load(out / "last.pt", weights_only=True)
    for key in ("generator", "critic", "generator_optimizer", "critic_optimizer", "epoch",
                "history"):
        assert key in ckpt
    assert not list(out.glob("*.tmp"))


def test_resume_is_exact(tmp_path, capsys):
    images = tiny_images()
    train_wgan_gp(images, tiny_spec(epochs=2), tmp_path / "a", progress=False, verbose=False)
    resumed = train_wgan_gp(images, tiny_spec(epochs=3), tmp_path / "a", progress=False)
    assert "resuming after epoch 2" in capsys.readouterr().out
    straight = train_wgan_gp(images, tiny_spec(epochs=3), tmp_path / "b", progress=False,
                             verbose=False)
    assert resumed["epochs"] == straight["epochs"] == 3
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    for net in ("generator", "critic"):
        for key, value in a[net].items():
            assert torch.equal(value, b[net][key]), f"{net}.{key}"
    for ra, rb in zip(resumed["history"], straight["history"], strict=True):
        assert ra["wasserstein"] == rb["wasserstein"]
        assert ra["generator_loss"] == rb["generator_loss"]
    # finished runs are not retrained; fresh starts over
    again = train_wgan_gp(images, tiny_spec(epochs=3), tmp_path / "a", progress=False)
    assert "already trained" in capsys.readouterr().out and again["epochs"] == 3
    fresh = train_wgan_gp(images, tiny_spec(epochs=1), tmp_path / "a", fresh=True,
                          progress=False, verbose=False)
    assert fresh["epochs"] == 1 and len(fresh["history"]) == 1
    with pytest.raises(TrigkitError, match="latent_dim.*--fresh"):
        train_wgan_gp(images, tiny_spec(latent_dim=5), tmp_path / "a", progress=False)


def test_time_budget_stops_with_state_saved(tmp_path):
    summary = train_wgan_gp(tiny_images(), tiny_spec(epochs=3, max_minutes=1e-9), tmp_path,
                            progress=False, verbose=False)
    assert summary["stopped"] == "time_budget" and summary["epochs"] == 1
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1
    summary = train_wgan_gp(tiny_images(), tiny_spec(epochs=3), tmp_path, progress=False,
                            verbose=False)
    assert summary["stopped"] == "completed" and summary["epochs"] == 3


def test_bad_images_are_rejected(tmp_path):
    with pytest.raises(TrigkitError, match="negative pixels"):
        train_wgan_gp(-tiny_images(), tiny_spec(), tmp_path, progress=False, verbose=False)
    with pytest.raises(TrigkitError, match=r"\(N, C, H, W\)"):
        train_wgan_gp(np.zeros((4, 8)), tiny_spec(), tmp_path, progress=False, verbose=False)


def test_load_generator_and_sample_determinism(tmp_path):
    with pytest.raises(TrigkitError, match="not found; train"):
        load_generator(tmp_path, SHAPE, 4)
    train_wgan_gp(tiny_images(), tiny_spec(), tmp_path, progress=False, verbose=False)
    gen = load_generator(tmp_path, SHAPE, 4)
    assert not gen.training
    assert float(gen.scale) > 1.0  # pixels in the data's units, not the network's
    a, b = sample(gen, 10, seed=7, batch=4), sample(gen, 10, seed=7, batch=4)
    assert a.shape == (10, *SHAPE) and a.dtype == np.float32 and (a >= 0).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, sample(gen, 10, seed=8, batch=4))
    with pytest.raises(TrigkitError, match="latent_dim 4 \\(now 6\\)"):
        load_generator(tmp_path, SHAPE, 6)
    with pytest.raises(TrigkitError, match="shape"):
        load_generator(tmp_path, (1, 9, 9), 4)


def test_compare_samples():
    real = tiny_images(60)
    same = compare_samples(real, real.copy(), observables)
    assert set(same) == {"sum", "max", PIXELS, MEAN_IMAGE}
    for stats in same.values():
        assert stats["ks"] == 0.0 and stats["wasserstein"] == 0.0
        assert stats["real_mean"] == stats["fake_mean"]
    assert same[MEAN_IMAGE]["relative_l1"] == 0.0
    assert same[PIXELS]["real_occupancy"] == same[PIXELS]["fake_occupancy"] > 0
    other = compare_samples(real, 2 * tiny_images(60, seed=1), observables)
    assert other["sum"]["ks"] > 0.3 and other["sum"]["wasserstein"] > 1.0
    assert other[MEAN_IMAGE]["relative_l1"] > 0.5
    with pytest.raises(TrigkitError, match="differ in shape"):
        compare_samples(real, np.zeros((5, 1, 9, 9)), observables)


def test_plot_gan_validation(tmp_path):
    real, fake = tiny_images(30), tiny_images(30, seed=2)
    fake[:, :, 0, 0] = 0.0
    two_channel = np.concatenate([real, real[:, :, ::-1]], axis=1)
    paths = plot_gan_validation(two_channel, np.concatenate([fake, fake], axis=1), observables,
                                tmp_path / "plots")
    assert [p.name for p in paths] == ["gan_observables.png", "gan_pixel_intensity.png",
                                       "gan_mean_images.png", "gan_examples.png"]
    assert all(p.is_file() and p.stat().st_size > 1000 for p in paths)
    assert not list((tmp_path / "plots").glob("*.tmp"))
