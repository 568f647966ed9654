"""WGAN-GP on the set of non-zero pixels of sparse calorimeter images (EPiC-GAN style).

A jet image is a handful of deposits on a mostly empty grid (dark-photon jets at 25 x 25: ~14
hit pixels of 625, one holding ~99 % of the pT). A convolutional generator must learn to leave
98 % of its outputs at exactly zero and place isolated soft deposits; in a CPU budget it
collapses to a few pixels (measured: KS 0.6-0.9 on mass and width). Here a jet is the *set* of
its hit pixels, each a point (row, column, log of its share of the image sum, channel shares),
plus the image sum; multiplicities are drawn from the training images (as in EPiC-GAN, Buhmann
et al., arXiv 2301.08128). Generator and critic are permutation-equivariant networks (per-point
layers that see the set's mean and maximum). Real row/column indices are dequantised with
uniform noise within their pixel; generated points are rounded back onto the grid, and points
that land in the same pixel add up, as deposits do.

The critic also sees jet observables computed from the points (log image sum, log mass of
massless deposits at the pixel positions, log pT-weighted width, channel-0 share,
multiplicity), so the distributions physicists validate on are pushed together directly.
Training is the WGAN-GP of :mod:`trigkit.learn.gan` (gradient penalty, ``critic_steps`` critic
updates per generator update, Adam with betas (0, 0.9)). Samples come from an exponential
moving average of the generator's weights (decay ``ema`` per generator step; measured: the
validation KS distances fall steadily with it instead of oscillating). After each epoch that
generator is scored on validation images (largest KS distance of image sum, mass and width)
and the best epoch is kept (``best.pt``), the last for resuming (``last.pt``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import ks_2samp
from torch import nn
from tqdm import tqdm

from trigkit.core.card import ModelCard
from trigkit.core.errors import TrigkitError
from trigkit.core.io import write_json_atomic

from .checkpoint import read_checkpoint, save_checkpoint
from .gan import check_checkpoint_config, gradient_penalty
from .pixel_sets import N_OBSERVABLES, PointCodec

#: Observables the validation KS distances are computed on (and the best epoch chosen by).
KS_OBSERVABLES = ("pt", "mass", "width")
CHECKPOINT_KIND = "wgan_gp_pixels"


@dataclass
class PixelGANSpec:
    """Settings of the pixel-set WGAN-GP; ``hidden`` is the width of every layer,
    ``layers`` the number of equivariant layers in generator and critic."""

    latent_dim: int = 32
    point_noise: int = 8
    hidden: int = 64
    layers: int = 2
    critic_steps: int = 5
    gp_lambda: float = 10.0
    observable_matching: float = 0.0
    lr: float = 2e-4
    betas: tuple[float, float] = (0.0, 0.9)
    batch_size: int = 128
    ema: float = 0.995
    epochs: int = 60
    seed: int = 0
    max_minutes: float = 60.0
    pixel_size: float = 0.1


def pixel_gan_spec(card: ModelCard, pixel_size: float = 1.0, epochs: int | None = None
                   ) -> PixelGANSpec:
    """The :class:`PixelGANSpec` of a ``pixel_wgan`` card (``architecture.dense``: one
    equivariant layer per entry, width the largest entry)."""
    a, t = card.architecture, card.training
    dense = tuple(a.dense) or (64,)
    return PixelGANSpec(latent_dim=a.latent_dim, hidden=max(dense), layers=len(dense),
                        critic_steps=t.critic_steps, gp_lambda=t.gp_lambda,
                        observable_matching=t.observable_matching, lr=t.lr,
                        batch_size=t.batch_size, epochs=epochs or t.epochs, seed=t.seed,
                        max_minutes=t.max_minutes, pixel_size=pixel_size)


class _Equivariant(nn.Module):
    """h_i <- h_i + f(h_i, mean_j h_j, max_j h_j) over the points of each set (masked)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.LeakyReLU(0.2),
                               nn.Linear(hidden, hidden))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[..., None].to(h.dtype)
        mean = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        top = (h * m - 1e4 * (1 - m)).amax(1)
        pooled = torch.cat([mean, top], 1)[:, None].expand(-1, h.shape[1], -1)
        return (h + self.f(torch.cat([h, pooled], 2))) * m


class PixelSetGenerator(nn.Module):
    """Noise -> point sets -> images. A global noise vector (and the multiplicity) gives a jet
    code and the image sum; per-point noise and the jet code give each point; shares of the
    image sum are a softmax over the set's points, channel shares a softmax over channels."""

    def __init__(self, shape: Sequence[int], pixel_size: float, spec: PixelGANSpec):
        super().__init__()
        self.codec = PointCodec(shape, pixel_size)
        self.latent_dim, self.point_noise = int(spec.latent_dim), int(spec.point_noise)
        hid, c = int(spec.hidden), self.codec.shape[0]
        self.jet = nn.Sequential(nn.Linear(self.latent_dim + 1, hid), nn.LeakyReLU(0.2),
                                 nn.Linear(hid, hid))
        self.total = nn.Sequential(nn.Linear(hid, hid), nn.LeakyReLU(0.2), nn.Linear(hid, 1))
        self.point = nn.Sequential(nn.Linear(self.point_noise + hid, hid), nn.LeakyReLU(0.2),
                                   nn.Linear(hid, hid))
        self.body = nn.ModuleList(_Equivariant(hid) for _ in range(spec.layers))
        self.out = nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(hid, 3 + (c if c > 1 else 0)))

    def forward(self, z: torch.Tensor, eps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Point features (N, K, F) for global noise z (N, L), point noise (N, K, P), mask."""
        m = mask.to(z.dtype)
        jet = self.jet(torch.cat([z, m.sum(1, keepdim=True) / 16.0 - 1.0], 1))
        h = self.point(torch.cat([eps, jet[:, None].expand(-1, mask.shape[1], -1)], 2))
        h = h * m[..., None]
        for layer in self.body:
            h = layer(h, mask)
        o = self.out(h)
        share = torch.log_softmax(o[..., 2] - 1e4 * (1 - m), dim=1)
        feats = [o[..., 0], o[..., 1],
                 (share - self.codec.share_mean) / self.codec.share_std]
        if self.codec.shape[0] > 1:
            feats += list((2 * torch.softmax(o[..., 3:], dim=2) - 1).unbind(2))
        feats.append(self.total(jet).expand(-1, mask.shape[1]))
        return torch.stack(feats, 2) * m[..., None]

    def noise(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
        """Global noise, point noise and a mask of multiplicities drawn from the training
        images, for ``n`` jets."""
        counts = self.codec.counts[torch.randint(0, len(self.codec.counts), (n,), generator=gen)]
        k = self.codec.max_points
        mask = torch.arange(k)[None] < counts[:, None]
        return (torch.randn(n, self.latent_dim, generator=gen),
                torch.randn(n, k, self.point_noise, generator=gen), mask)

    def sample_images(self, n: int, seed: int, batch: int = 2048) -> np.ndarray:
        """``n`` generated images (n, C, H, W) float32; the same seed gives the same images."""
        if n < 0 or batch < 1:
            raise TrigkitError(f"sample: need n >= 0 and batch >= 1, got n={n}, batch={batch}")
        gen = torch.Generator().manual_seed(int(seed))
        was_training = self.training
        self.eval()
        out = np.empty((n, *self.codec.shape), np.float32)
        with torch.no_grad():
            for i in range(0, n, batch):
                z, eps, mask = self.noise(min(batch, n - i), gen)
                out[i:i + len(z)] = self.codec.decode(self(z, eps, mask), mask)
        self.train(was_training)
        return out


class PixelSetCritic(nn.Module):
    """Point sets (N, K, F) + mask -> scores (N,): per-point layers, equivariant layers, sum and
    max pooling, concatenated with the jet observables of :meth:`PointCodec.observables`."""

    def __init__(self, codec: PointCodec, spec: PixelGANSpec):
        super().__init__()
        self.codec = codec
        hid = int(spec.hidden)
        self.point = nn.Sequential(nn.Linear(codec.n_features, hid), nn.LeakyReLU(0.2),
                                   nn.Linear(hid, hid))
        self.body = nn.ModuleList(_Equivariant(hid) for _ in range(spec.layers))
        self.head = nn.Sequential(nn.Linear(2 * hid + N_OBSERVABLES, hid), nn.LeakyReLU(0.2),
                                  nn.Linear(hid, 1))

    def forward(self, points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[..., None].to(points.dtype)
        h = self.point(points) * m
        for layer in self.body:
            h = layer(h, mask)
        pooled = [h.sum(1) / 16.0, (h - 1e4 * (1 - m)).amax(1),
                  self.codec.observables(points, mask)]
        return self.head(torch.cat(pooled, 1))[:, 0]


def _jet_observables(codec: PointCodec, images: np.ndarray) -> dict[str, np.ndarray]:
    """Monotonic transforms of the image sum, mass and width (KS distances are invariant under
    them, so these give the KS of the observables themselves)."""
    with torch.no_grad():
        obs = codec.observables(*codec.encode(images)).double().numpy()
    return dict(zip(KS_OBSERVABLES, obs[:, :3].T, strict=True))


def validation_ks(generator: PixelSetGenerator, images: np.ndarray, seed: int
                  ) -> dict[str, float]:
    """KS distances of :data:`KS_OBSERVABLES` (image sum, mass and width of massless deposits
    at the pixel centres) between ``images`` and as many generated ones, and their maximum
    ``max_ks``."""
    fake = generator.sample_images(len(images), seed)
    o_r = _jet_observables(generator.codec, images)
    o_f = _jet_observables(generator.codec, fake)
    ks = {k: float(ks_2samp(o_r[k], o_f[k]).statistic) for k in KS_OBSERVABLES}
    return {**ks, "max_ks": max(ks.values())}


def _dequantised(points: torch.Tensor, mask: torch.Tensor, gen: torch.Generator
                 ) -> torch.Tensor:
    """Real points with row/column spread uniformly over their pixel (in units of 4 pixels)."""
    q = points.clone()
    q[..., :2] += (torch.rand(q[..., :2].shape, generator=gen) - 0.5) / 4.0
    return q * mask[..., None]


def _critic_step(nets: tuple, opt_c, real: torch.Tensor, mask: torch.Tensor, spec: PixelGANSpec,
                 gen: torch.Generator) -> tuple[float, float, float]:
    generator, critic = nets[:2]
    with torch.no_grad():
        z, eps, _ = generator.noise(len(real), gen)
        fake = generator(z, eps[:, :mask.shape[1]], mask)
    w_est = critic(real, mask).mean() - critic(fake, mask).mean()
    gp = gradient_penalty(lambda x: critic(x, mask), real, fake, gen)
    loss = -w_est + spec.gp_lambda * gp
    opt_c.zero_grad(set_to_none=True)
    loss.backward()
    opt_c.step()
    return loss.item(), w_est.item(), gp.item()


def observable_w1(codec: PointCodec, fake: torch.Tensor, fake_mask: torch.Tensor,
                  real: torch.Tensor, real_mask: torch.Tensor) -> torch.Tensor:
    """Sum over :data:`KS_OBSERVABLES` of the 1D Wasserstein distance between two equal-size
    batches (mean absolute difference of the sorted values, in the critic's observable units:
    standardised log pT, log(1 + mass), log(width + 0.001)); differentiable in ``fake``."""
    n = len(KS_OBSERVABLES)
    o_f = codec.observables(fake, fake_mask)[:, :n].sort(0).values
    o_r = codec.observables(real, real_mask)[:, :n].sort(0).values
    return (o_f - o_r).abs().mean(0).sum()


def _generator_step(nets: tuple, opt_g, real: tuple, gen: torch.Generator, spec: PixelGANSpec
                    ) -> tuple[float, float]:
    """One generator update on as many jets as the real batch ``(points, mask)``: the critic
    loss plus ``observable_matching`` x :func:`observable_w1` against that real batch; then the
    weight average. Returns (critic loss, observable distance; 0 when not matched)."""
    generator, critic, average = nets
    critic.requires_grad_(False)
    z, eps, mask = generator.noise(len(real[0]), gen)
    fake = generator(z, eps, mask)
    loss = -critic(fake, mask).mean()
    w1 = torch.zeros(())
    if spec.observable_matching > 0:
        w1 = observable_w1(generator.codec, fake, mask, *real)
        loss = loss + spec.observable_matching * w1
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    opt_g.step()
    critic.requires_grad_(True)
    with torch.no_grad():
        for p_avg, p in zip(average.parameters(), generator.parameters(), strict=True):
            p_avg.lerp_(p, 1.0 - spec.ema)
        for b_avg, b in zip(average.buffers(), generator.buffers(), strict=True):
            b_avg.copy_(b)
    return loss.item() - spec.observable_matching * w1.item(), w1.item()


def _epoch(nets: tuple, opts: tuple, data: tuple, spec: PixelGANSpec, epoch: int, bar
           ) -> dict[str, float]:
    """One epoch: a seeded shuffle of the training sets, ``critic_steps`` critic steps on
    successive batches per generator step; returns the mean losses."""
    points, mask = data
    gen = torch.Generator().manual_seed(spec.seed * 100003 + epoch)
    perm = torch.randperm(len(points), generator=gen)
    bs = min(spec.batch_size, len(points))
    n_batches = len(points) // bs
    steps = max(1, n_batches // spec.critic_steps)
    sums = dict.fromkeys(("critic_loss", "wasserstein", "gp", "generator_loss", "observable_w1"),
                         0.0)
    for step in range(steps):
        for k in range(spec.critic_steps):
            b = (step * spec.critic_steps + k) % n_batches
            idx = perm[b * bs:(b + 1) * bs]
            real = _dequantised(points[idx], mask[idx], gen)
            loss, w_est, gp = _critic_step(nets, opts[1], real, mask[idx], spec, gen)
            for key, v in zip(("critic_loss", "wasserstein", "gp"), (loss, w_est, gp),
                              strict=True):
                sums[key] += v / spec.critic_steps
        g_loss, w1 = _generator_step(nets, opts[0], (real, mask[idx]), gen, spec)
        sums["generator_loss"] += g_loss
        sums["observable_w1"] += w1
        if not (math.isfinite(loss) and math.isfinite(g_loss)):
            raise TrigkitError(f"pixel WGAN-GP losses became non-finite at epoch {epoch + 1} "
                               f"step {step}; lower training.lr (now {spec.lr:g})")
        if bar is not None:
            bar.update(1)
    return {k: v / steps for k, v in sums.items()} | {"generator_steps": steps}


def _config(generator: PixelSetGenerator, spec: PixelGANSpec) -> dict[str, Any]:
    return {"shape": list(generator.codec.shape), "latent_dim": spec.latent_dim,
            "point_noise": spec.point_noise, "hidden": spec.hidden, "layers": spec.layers,
            "pixel_size": spec.pixel_size}


def _read(path: Path) -> dict[str, Any]:
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("kind") != CHECKPOINT_KIND:
        raise TrigkitError(f"{path} is not a pixel WGAN-GP checkpoint; delete it or train "
                           "with --fresh")
    return ckpt


def _start(images: np.ndarray, spec: PixelGANSpec, out_dir: Path, fresh: bool, verbose: bool):
    """Networks, optimisers and training state, fresh or resumed from ``last.pt``."""
    torch.manual_seed(spec.seed)
    generator = PixelSetGenerator(images.shape[1:], spec.pixel_size, spec)
    generator.codec.fit(images)
    critic = PixelSetCritic(generator.codec, spec)
    average = copy.deepcopy(generator).requires_grad_(False)
    opt_g = torch.optim.Adam(generator.parameters(), lr=spec.lr, betas=tuple(spec.betas))
    opt_c = torch.optim.Adam(critic.parameters(), lr=spec.lr, betas=tuple(spec.betas))
    state: dict[str, Any] = {"epoch": 0, "history": [], "best_ks": math.inf, "best_epoch": 0}
    last = out_dir / "last.pt"
    if last.is_file() and not fresh:
        ckpt = _read(last)
        check_checkpoint_config(ckpt, _config(generator, spec), last)
        generator.load_state_dict(ckpt["generator"])
        average.load_state_dict(ckpt["generator_average"])
        critic.load_state_dict(ckpt["critic"])
        opt_g.load_state_dict(ckpt["generator_optimizer"])
        opt_c.load_state_dict(ckpt["critic_optimizer"])
        state = {k: ckpt[k] for k in state}
        if verbose:
            print(f"pixel WGAN-GP: resuming after epoch {state['epoch']} of {spec.epochs} "
                  f"({last}); pass --fresh to retrain")
    return (generator, critic, average), (opt_g, opt_c), state


def train_pixel_gan(images: np.ndarray, val_images: np.ndarray, spec: PixelGANSpec,
                    out_dir: Path, fresh: bool = False, progress: bool = True,
                    verbose: bool = True) -> dict[str, Any]:
    """Train (or resume from ``out_dir/last.pt``) the pixel-set WGAN-GP on ``images``
    (N, C, H, W) >= 0; after every epoch score it on ``val_images`` with
    :func:`validation_ks` and keep the best epoch in ``best.pt``. ``last.pt`` and
    ``history.json`` are written atomically every epoch; a resumed run ends with the same
    weights as an uninterrupted one. ``max_minutes`` is a safety stop only (marked
    ``time_budget``). Returns {epochs, best_epoch, best_ks, history, stopped, seconds}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nets, opts, state = _start(images, spec, out_dir, fresh, verbose)
    generator, average = nets[0], nets[2]
    data = generator.codec.encode(images)
    t_start, stopped = time.perf_counter(), "completed"
    for epoch in range(state["epoch"], spec.epochs):
        t0 = time.perf_counter()
        bar = (tqdm(total=max(1, len(images) // spec.batch_size // spec.critic_steps),
                    desc=f"pixel WGAN-GP epoch {epoch + 1}/{spec.epochs}", unit="step",
                    leave=False, dynamic_ncols=True) if progress else None)
        row = _epoch(nets, opts, data, spec, epoch, bar)
        if bar is not None:
            bar.close()
        row = {"epoch": epoch + 1, **row,
               **{f"val_ks_{k}": v for k, v in validation_ks(average, val_images,
                                                              spec.seed + 1).items()},
               "seconds": time.perf_counter() - t0}
        state["history"].append(row)
        state["epoch"] = epoch + 1
        if row["val_ks_max_ks"] < state["best_ks"]:
            state["best_ks"], state["best_epoch"] = row["val_ks_max_ks"], epoch + 1
            save_checkpoint({"kind": CHECKPOINT_KIND, "config": _config(generator, spec),
                             "generator": average.state_dict(), "epoch": epoch + 1},
                            out_dir / "best.pt")
        save_checkpoint({"kind": CHECKPOINT_KIND, "config": _config(generator, spec),
                         "spec": asdict(spec), "generator": generator.state_dict(),
                         "generator_average": average.state_dict(),
                         "critic": nets[1].state_dict(),
                         "generator_optimizer": opts[0].state_dict(),
                         "critic_optimizer": opts[1].state_dict(), **state},
                        out_dir / "last.pt")
        write_json_atomic(out_dir / "history.json", state["history"])
        if verbose:
            print(f"  pixel WGAN-GP epoch {epoch + 1}: W {row['wasserstein']:.4g} validation KS "
                  + " ".join(f"{k} {row['val_ks_' + k]:.3f}" for k in KS_OBSERVABLES)
                  + f" ({row['seconds']:.1f} s)", flush=True)
        if time.perf_counter() - t_start > spec.max_minutes * 60 and epoch + 1 < spec.epochs:
            stopped = "time_budget"
            if verbose:
                print(f"pixel WGAN-GP: safety time limit of {spec.max_minutes:g} min reached "
                      f"after epoch {epoch + 1}; run again to resume")
            break
    return {"epochs": state["epoch"], "best_epoch": state["best_epoch"],
            "best_ks": state["best_ks"], "history": state["history"], "stopped": stopped,
            "seconds": time.perf_counter() - t_start}


def load_pixel_generator(out_dir: Path, shape: Sequence[int], spec: PixelGANSpec
                         ) -> PixelSetGenerator:
    """The generator of ``out_dir/best.pt`` (eval mode); checks it matches ``spec`` (the pixel
    size comes from the checkpoint)."""
    path = Path(out_dir) / "best.pt"
    if not path.is_file():
        raise TrigkitError(f"pixel WGAN-GP checkpoint {path} not found; train the generative "
                           "model first (trigkit train --model NAME)")
    ckpt = _read(path)
    spec = replace(spec, pixel_size=float(ckpt["config"].get("pixel_size", spec.pixel_size)))
    generator = PixelSetGenerator(shape, spec.pixel_size, spec)
    check_checkpoint_config(ckpt, _config(generator, spec), path)
    generator.codec.counts = torch.zeros_like(ckpt["generator"]["codec.counts"])
    generator.load_state_dict(ckpt["generator"])
    return generator.eval()
