"""WGAN-GP for calorimeter jet images (Gulrajani et al., arXiv 1704.00028).

Images are float32 (N, C, H, W) with non-negative pixels (pT or energy per cell, any units).
The generator ends in a ReLU, so generated images have exact zeros like real calorimeter images;
it works with images divided by a data scale (its ``scale`` buffer) and multiplies it back.
The critic has no batch normalisation (the gradient penalty is per sample); it uses a per-sample
layer norm. Training: ``critic_steps`` critic updates per generator update, gradient penalty
``gp_lambda``, Adam(lr, betas=(0, 0.9)); checkpoints each epoch, exact resume, time budget.
Validation (jet observables and pixel intensities, real vs generated) is in
:mod:`trigkit.learn.gan_validation`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from trigkit.core.errors import TrigkitError
from trigkit.core.io import write_json_atomic

from .checkpoint import read_checkpoint, save_checkpoint

Shape = tuple[int, int, int]


def _shape(shape: Sequence[int]) -> Shape:
    s = tuple(int(v) for v in shape)
    if len(s) == 2:
        s = (1, *s)
    if len(s) != 3 or min(s) < 1:
        raise TrigkitError(f"WGAN-GP image shape must be (C, H, W) or (H, W) with positive "
                           f"sizes; got {tuple(shape)}")
    return s  # type: ignore[return-value]


def _down(n: int) -> int:
    """Output size of a 3x3 convolution with stride 2 and padding 1."""
    return (n - 1) // 2 + 1


class Generator(nn.Module):
    """Noise (N, latent_dim) -> images (N, C, H, W) >= 0.

    Dense layer to a 2*width x ceil(H/4) x ceil(W/4) map, two blocks (nearest x2 upsampling,
    3x3 conv, batch norm, LeakyReLU) to width and width/2 channels, a 3x3 conv to C channels,
    a centre crop to (H, W) (any size works) and a ReLU; times the ``scale`` buffer.
    """

    def __init__(self, latent_dim: int, shape: Sequence[int], width: int = 32):
        super().__init__()
        if latent_dim < 1 or width < 2:
            raise TrigkitError(f"Generator needs latent_dim >= 1 and width >= 2; got "
                               f"{latent_dim} and {width}")
        self.latent_dim, self.shape, self.width = int(latent_dim), _shape(shape), int(width)
        c, h, w = self.shape
        self.h0, self.w0 = -(-h // 4), -(-w // 4)
        c0, c1, c2 = 2 * width, width, max(1, width // 2)
        self.dense = nn.Sequential(nn.Linear(latent_dim, c0 * self.h0 * self.w0),
                                   nn.BatchNorm1d(c0 * self.h0 * self.w0), nn.LeakyReLU(0.2))
        self.body = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c0, c1, 3, padding=1),
            nn.BatchNorm2d(c1), nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c1, c2, 3, padding=1),
            nn.BatchNorm2d(c2), nn.LeakyReLU(0.2),
            nn.Conv2d(c2, c, 3, padding=1),
        )
        self.register_buffer("scale", torch.tensor(1.0))

    def normalised(self, z: torch.Tensor) -> torch.Tensor:
        """Images in units of ``scale`` (what the critic sees during training)."""
        c, h, w = self.shape
        x = self.dense(z).view(len(z), 2 * self.width, self.h0, self.w0)
        x = self.body(x)
        top, left = (x.shape[2] - h) // 2, (x.shape[3] - w) // 2
        return torch.relu(x[:, :, top:top + h, left:left + w])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.normalised(z) * self.scale


class Critic(nn.Module):
    """Images (N, C, H, W) -> scores (N,). Three 3x3 convolutions (stride 1, 2, 2) with
    LeakyReLU(0.2) and optional per-sample layer norm (no batch norm), then a linear layer."""

    def __init__(self, shape: Sequence[int], width: int = 32, layer_norm: bool = True):
        super().__init__()
        self.shape = _shape(shape)
        c, h, w = self.shape
        c1, c2, c3 = max(1, width // 2), width, 2 * width

        def norm(ch: int) -> nn.Module:
            return nn.GroupNorm(1, ch) if layer_norm else nn.Identity()

        self.features = nn.Sequential(
            nn.Conv2d(c, c1, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), norm(c2), nn.LeakyReLU(0.2),
            nn.Conv2d(c2, c3, 3, stride=2, padding=1), norm(c3), nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        self.head = nn.Linear(c3 * _down(_down(h)) * _down(_down(w)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))[:, 0]


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
    """Mean of (||grad_x critic(x)||_2 - 1)^2 at random points x = a real + (1 - a) fake,
    a ~ U(0, 1) per sample (Gulrajani et al.); the caller multiplies by lambda. Differentiable
    with respect to the critic's parameters."""
    if real.shape != fake.shape:
        raise TrigkitError(f"gradient_penalty: real {tuple(real.shape)} and fake "
                           f"{tuple(fake.shape)} batches differ in shape")
    alpha = torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), dtype=real.dtype,
                       device=real.device, generator=generator)
    x = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    norm = torch.sqrt(grad.flatten(1).pow(2).sum(dim=1) + 1e-12)
    return ((norm - 1.0) ** 2).mean()


@dataclass
class GANSpec:
    """WGAN-GP training settings (defaults from the WGAN-GP paper); ``width`` sets the network
    size, ``max_minutes`` the time budget (checked after each epoch)."""

    latent_dim: int = 64
    critic_steps: int = 5
    gp_lambda: float = 10.0
    lr: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.9)
    batch_size: int = 128
    epochs: int = 20
    seed: int = 0
    max_minutes: float = 10.0
    width: int = 32


def _check_images(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise TrigkitError(f"WGAN-GP training images must be (N, C, H, W) or (N, H, W); got "
                           f"shape {x.shape}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if len(x) < 2:
        raise TrigkitError(f"WGAN-GP training needs at least 2 images, got {len(x)}")
    if not np.isfinite(x).all():
        raise TrigkitError("WGAN-GP training images contain NaN or inf pixels; fix the inputs")
    if x.min() < 0:
        raise TrigkitError(f"WGAN-GP training images have negative pixels (min {x.min():g}); "
                           "the generator makes intensities >= 0, so clip or shift the inputs")
    return x


def _config(gen: Generator) -> dict[str, Any]:
    return {"latent_dim": gen.latent_dim, "shape": list(gen.shape), "width": gen.width}


def _load(path: Path) -> dict[str, Any]:
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("kind") != "wgan_gp":
        raise TrigkitError(f"{path} is not a WGAN-GP checkpoint; delete it or train with --fresh")
    return ckpt


def check_checkpoint_config(ckpt: dict[str, Any], want: dict[str, Any], path: Path) -> None:
    """Refuse a GAN checkpoint whose ``config`` differs from ``want`` (naming each key)."""
    diff = [k for k in want if ckpt["config"].get(k) != want[k]]
    if diff:
        have = ", ".join(f"{k} {ckpt['config'].get(k)} (now {want[k]})" for k in diff)
        raise TrigkitError(f"WGAN-GP checkpoint {path} was trained with a different setup: "
                           f"{have}; delete it or train with --fresh")


def _requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def _resume_gan(last: Path, gen: Generator, critic: Critic, opt_g, opt_c) -> dict[str, Any]:
    """Restore both networks and optimisers from ``last``; the training state."""
    ckpt = _load(last)
    check_checkpoint_config(ckpt, _config(gen), last)
    gen.load_state_dict(ckpt["generator"])
    critic.load_state_dict(ckpt["critic"])
    opt_g.load_state_dict(ckpt["generator_optimizer"])
    opt_c.load_state_dict(ckpt["critic_optimizer"])
    return {"epoch": ckpt["epoch"], "history": ckpt["history"], "stopped": ""}


def _gan_epoch(nets: tuple, opts: tuple, data: torch.Tensor, perm: torch.Tensor, spec: GANSpec,
               sizes: tuple[int, int, int], scale: float, bar, epoch: int, last: Path
               ) -> dict[str, float]:
    """One epoch: ``gen_steps`` generator steps, each after ``critic_steps`` critic steps on
    successive real batches of ``perm``; returns the summed losses."""
    (gen, critic), (opt_g, opt_c) = nets, opts
    gen_steps, n_batches, bs = sizes
    sums = dict.fromkeys(("critic_loss", "wasserstein", "gp", "generator_loss"), 0.0)
    k = 0
    for step in range(gen_steps):
        for _ in range(spec.critic_steps):
            b = k % n_batches
            k += 1
            real = data[perm[b * bs:(b + 1) * bs]] / scale
            with torch.no_grad():
                fake = gen.normalised(torch.randn(bs, spec.latent_dim))
            w_est = critic(real).mean() - critic(fake).mean()
            gp = gradient_penalty(critic, real, fake)
            loss = -w_est + spec.gp_lambda * gp
            opt_c.zero_grad(set_to_none=True)
            loss.backward()
            opt_c.step()
            sums["critic_loss"] += loss.item() / spec.critic_steps
            sums["wasserstein"] += w_est.item() / spec.critic_steps
            sums["gp"] += gp.item() / spec.critic_steps
        _requires_grad(critic, False)
        g_loss = -critic(gen.normalised(torch.randn(bs, spec.latent_dim))).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        _requires_grad(critic, True)
        sums["generator_loss"] += g_loss.item()
        if not (math.isfinite(loss.item()) and math.isfinite(g_loss.item())):
            raise TrigkitError(f"WGAN-GP losses became non-finite at epoch {epoch + 1} step "
                               f"{step}; lower training.lr (now {spec.lr:g}) or check the "
                               f"images. The last good checkpoint is {last}")
        if bar is not None:
            bar.update(1)
            bar.set_postfix(W=f"{sums['wasserstein'] / (step + 1):.4g}")
    return sums


def train_wgan_gp(images: np.ndarray, spec: GANSpec, out_dir: Path, fresh: bool = False,
                  progress: bool = True, verbose: bool = True) -> dict[str, Any]:
    """Train (or resume from ``out_dir/last.pt`` unless ``fresh``) a WGAN-GP on ``images``.

    Each generator step follows ``spec.critic_steps`` critic steps on successive real batches of
    the epoch's seeded shuffle (wrapping round on tiny data); an epoch has max(1, batches //
    critic_steps) generator steps. ``last.pt`` (both networks and optimisers, epoch, history) and
    ``history.json`` (per epoch: critic_loss, generator_loss, wasserstein, gp) are written
    atomically after every epoch; a resumed run ends with the same weights as an uninterrupted
    one. Returns {epochs, history, stopped ("completed" or "time_budget"), seconds, checkpoint}.
    """
    x = _check_images(images)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    last = out_dir / "last.pt"
    torch.manual_seed(spec.seed)
    gen = Generator(spec.latent_dim, x.shape[1:], spec.width)
    critic = Critic(x.shape[1:], spec.width)
    peak = float(x.reshape(len(x), -1).max(axis=1).mean())
    gen.scale.fill_(peak if peak > 0 else 1.0)
    opt_g = torch.optim.Adam(gen.parameters(), lr=spec.lr, betas=tuple(spec.betas))
    opt_c = torch.optim.Adam(critic.parameters(), lr=spec.lr, betas=tuple(spec.betas))
    state: dict[str, Any] = {"epoch": 0, "history": [], "stopped": ""}
    if last.is_file() and not fresh:
        state = _resume_gan(last, gen, critic, opt_g, opt_c)
        if verbose:
            done = "already trained" if state["epoch"] >= spec.epochs else "resuming after"
            print(f"WGAN-GP: {done} epoch {state['epoch']} of {spec.epochs} ({last}); "
                  "pass --fresh to retrain")
    data = torch.from_numpy(x)
    scale = float(gen.scale)
    n = len(x)
    bs = min(spec.batch_size, n)
    n_batches = n // bs  # full batches only
    gen_steps = max(1, n_batches // spec.critic_steps)
    t_start = time.perf_counter()
    for epoch in range(state["epoch"], spec.epochs):
        torch.manual_seed(spec.seed * 100003 + epoch)
        perm = torch.from_numpy(np.random.default_rng(spec.seed * 7919 + epoch).permutation(n))
        gen.train()
        critic.train()
        t0 = time.perf_counter()
        bar = None
        if progress:
            bar = tqdm(total=gen_steps, desc=f"WGAN-GP epoch {epoch + 1}/{spec.epochs}",
                       unit="step", leave=False, dynamic_ncols=True)
        sums = _gan_epoch((gen, critic), (opt_g, opt_c), data, perm, spec,
                          (gen_steps, n_batches, bs), scale, bar, epoch, last)
        if bar is not None:
            bar.close()
        row = {"epoch": epoch + 1, **{key: v / gen_steps for key, v in sums.items()},
               "generator_steps": gen_steps, "critic_steps": gen_steps * spec.critic_steps,
               "seconds": time.perf_counter() - t0}
        state["history"].append(row)
        state["epoch"] = epoch + 1
        if (time.perf_counter() - t_start > spec.max_minutes * 60 and epoch + 1 < spec.epochs):
            state["stopped"] = "time_budget"
        ckpt = {"kind": "wgan_gp", "config": _config(gen), "spec": asdict(spec),
                "generator": gen.state_dict(), "critic": critic.state_dict(),
                "generator_optimizer": opt_g.state_dict(), "critic_optimizer": opt_c.state_dict(),
                "epoch": state["epoch"], "history": state["history"]}
        save_checkpoint(ckpt, last)
        write_json_atomic(out_dir / "history.json", state["history"])
        if verbose:
            print(f"  WGAN-GP epoch {epoch + 1}: W {row['wasserstein']:.4g} critic "
                  f"{row['critic_loss']:.4g} generator {row['generator_loss']:.4g} gp "
                  f"{row['gp']:.3g} ({row['seconds']:.1f} s)", flush=True)
        if state["stopped"]:
            if verbose:
                print(f"WGAN-GP: time budget of {spec.max_minutes:g} min reached after epoch "
                      f"{epoch + 1}; run again to resume")
            break
    return {"epochs": state["epoch"], "history": state["history"],
            "stopped": state["stopped"] or "completed",
            "seconds": time.perf_counter() - t_start, "checkpoint": str(last)}


def load_generator(out_dir: Path, shape: Sequence[int], latent_dim: int) -> Generator:
    """The generator of ``out_dir/last.pt`` (eval mode); checks shape and latent_dim."""
    path = Path(out_dir) / "last.pt"
    if not path.is_file():
        raise TrigkitError(f"WGAN-GP checkpoint {path} not found; train the generative model "
                           "first (trigkit train --model NAME)")
    ckpt = _load(path)
    want = {"latent_dim": int(latent_dim), "shape": list(_shape(shape))}
    check_checkpoint_config(ckpt, want, path)
    gen = Generator(latent_dim, shape, width=ckpt["config"]["width"])
    gen.load_state_dict(ckpt["generator"])
    return gen.eval()


def sample(generator: nn.Module, n: int, seed: int, batch: int = 1024) -> np.ndarray:
    """``n`` generated images (n, C, H, W) float32, in eval mode; the same seed (and batch)
    gives the same images. Generators with their own ``sample_images`` (the pixel-set
    generator of :mod:`trigkit.learn.pixel_gan`) use it."""
    if hasattr(generator, "sample_images"):
        return generator.sample_images(n, seed)
    if n < 0 or batch < 1:
        raise TrigkitError(f"sample: need n >= 0 and batch >= 1, got n={n}, batch={batch}")
    rng = torch.Generator().manual_seed(int(seed))
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    out = np.empty((n, *generator.shape), dtype=np.float32)
    with torch.no_grad():
        for i in range(0, n, batch):
            m = min(batch, n - i)
            z = torch.randn(m, generator.latent_dim, generator=rng).to(device)
            out[i:i + m] = generator(z).cpu().numpy()
    generator.train(was_training)
    return out
