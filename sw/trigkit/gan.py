"""WGAN-GP for calorimeter jet images (Gulrajani et al., arXiv 1704.00028).

Images are float32 (N, C, H, W) with non-negative pixels (pT or energy per cell, any units).
The generator ends in a ReLU, so generated images have exact zeros like real calorimeter images;
it works with images divided by a data scale (its ``scale`` buffer) and multiplies it back.
The critic has no batch normalisation (the gradient penalty is per sample); it uses a per-sample
layer norm. Training: ``critic_steps`` critic updates per generator update, gradient penalty
``gp_lambda``, Adam(lr, betas=(0, 0.9)); checkpoints each epoch, exact resume, time budget.
Validation compares jet observables and pixel intensities of real and generated images.
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

from .errors import TrigkitError
from .io import atomic_path, write_json_atomic

Shape = tuple[int, int, int]
Observables = Callable[[np.ndarray], dict[str, np.ndarray]]
PIXELS = "pixel intensity (non-zero)"
MEAN_IMAGE = "mean image"
_MAX_PIXELS = 1_000_000  # pixel values compared per sample (random subset beyond that)


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
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise TrigkitError(f"checkpoint {path} is not readable ({err}); delete it or train "
                           "with --fresh") from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") != "wgan_gp":
        raise TrigkitError(f"{path} is not a WGAN-GP checkpoint; delete it or train with --fresh")
    return ckpt


def _check_config(ckpt: dict[str, Any], want: dict[str, Any], path: Path) -> None:
    diff = [k for k in want if ckpt["config"].get(k) != want[k]]
    if diff:
        have = ", ".join(f"{k} {ckpt['config'].get(k)} (now {want[k]})" for k in diff)
        raise TrigkitError(f"WGAN-GP checkpoint {path} was trained with a different setup: "
                           f"{have}; delete it or train with --fresh")


def _requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


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
        ckpt = _load(last)
        _check_config(ckpt, _config(gen), last)
        gen.load_state_dict(ckpt["generator"])
        critic.load_state_dict(ckpt["critic"])
        opt_g.load_state_dict(ckpt["generator_optimizer"])
        opt_c.load_state_dict(ckpt["critic_optimizer"])
        state = {"epoch": ckpt["epoch"], "history": ckpt["history"], "stopped": ""}
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
        sums = dict.fromkeys(("critic_loss", "wasserstein", "gp", "generator_loss"), 0.0)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=gen_steps, desc=f"WGAN-GP epoch {epoch + 1}/{spec.epochs}",
                       unit="step", leave=False, dynamic_ncols=True)
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
        with atomic_path(last) as tmp:
            torch.save(ckpt, tmp)
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
    _check_config(ckpt, want, path)
    gen = Generator(latent_dim, shape, width=ckpt["config"]["width"])
    gen.load_state_dict(ckpt["generator"])
    return gen.eval()


def sample(generator: Generator, n: int, seed: int, batch: int = 1024) -> np.ndarray:
    """``n`` generated images (n, C, H, W) float32, in eval mode; the same seed (and batch)
    gives the same images."""
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


def _as_images(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4 or len(a) == 0:
        raise TrigkitError(f"{name} images must be a non-empty (N, C, H, W) or (N, H, W) array; "
                           f"got shape {a.shape}")
    return a


def _pair(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    real, fake = _as_images(real, "real"), _as_images(fake, "generated")
    if real.shape[1:] != fake.shape[1:]:
        raise TrigkitError(f"real images {real.shape[1:]} and generated images "
                           f"{fake.shape[1:]} differ in shape; sample the generator of this data")
    return real, fake


def _nonzero_pixels(a: np.ndarray, seed: int = 0) -> np.ndarray:
    v = a[a > 0].astype(np.float64)
    if len(v) > _MAX_PIXELS:
        v = np.random.default_rng(seed).choice(v, _MAX_PIXELS, replace=False)
    return v


def _stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    from scipy.stats import ks_2samp, wasserstein_distance

    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        nan = float("nan")
        return {"real_mean": nan, "fake_mean": nan, "real_median": nan, "fake_median": nan,
                "ks": nan, "wasserstein": nan}
    return {"real_mean": float(a.mean()), "fake_mean": float(b.mean()),
            "real_median": float(np.median(a)), "fake_median": float(np.median(b)),
            "ks": float(ks_2samp(a, b).statistic), "wasserstein": float(wasserstein_distance(a, b))}


def _observables(observables: Observables, real: np.ndarray, fake: np.ndarray
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    obs_r, obs_f = observables(real), observables(fake)
    if set(obs_r) != set(obs_f):
        raise TrigkitError(f"the observables function gave keys {sorted(obs_r)} for real and "
                           f"{sorted(obs_f)} for generated images; it must give the same keys")
    return obs_r, obs_f


def compare_samples(real: np.ndarray, fake: np.ndarray, observables: Observables
                    ) -> dict[str, dict[str, float]]:
    """Validation table of generated against real images.

    For each observable from ``observables(images)``, for the non-zero pixel intensities
    (key ``"pixel intensity (non-zero)"``, plus ``real_occupancy``/``fake_occupancy``, the
    fraction of non-zero pixels) and for the pixel values of the two mean images (key
    ``"mean image"``, plus ``relative_l1`` = sum|mean_fake - mean_real| / sum|mean_real| and
    ``max_abs_diff``): real/fake means and medians, the Kolmogorov-Smirnov statistic ``ks`` and
    the Wasserstein-1 distance ``wasserstein`` (NaN where a sample is empty).
    """
    real, fake = _pair(real, fake)
    obs_r, obs_f = _observables(observables, real, fake)
    out = {name: _stats(obs_r[name], obs_f[name]) for name in obs_r}
    out[PIXELS] = {**_stats(_nonzero_pixels(real), _nonzero_pixels(fake)),
                   "real_occupancy": float(np.mean(real > 0)),
                   "fake_occupancy": float(np.mean(fake > 0))}
    mr, mf = real.mean(axis=0, dtype=np.float64), fake.mean(axis=0, dtype=np.float64)
    denom = float(np.abs(mr).sum())
    out[MEAN_IMAGE] = {**_stats(mr, mf),
                       "relative_l1": float(np.abs(mf - mr).sum() / denom) if denom > 0
                       else float("nan"),
                       "max_abs_diff": float(np.abs(mf - mr).max())}
    return out


def _log_norm(*arrays: np.ndarray):
    """A shared logarithmic colour scale over four decades, or None if all are zero."""
    from matplotlib.colors import LogNorm

    vmax = max(float(np.max(a)) for a in arrays)
    return LogNorm(vmin=vmax * 1e-4, vmax=vmax, clip=True) if vmax > 0 else None


def _cmap():
    """viridis with empty (zero) pixels in its lowest colour rather than blank."""
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return cmap.with_extremes(bad=cmap(0.0))


def plot_gan_validation(real: np.ndarray, fake: np.ndarray, observables: Observables,
                        out_dir: Path) -> list[Path]:
    """Validation plots into ``out_dir`` (created): ``gan_observables.png`` (density overlays
    per observable), ``gan_pixel_intensity.png`` (non-zero pixels, log-log),
    ``gan_mean_images.png`` (real, generated and difference per channel) and
    ``gan_examples.png`` (a few real and generated images). Returns the paths."""
    from .plots import _save, plt  # plots selects the Agg backend before importing pyplot

    real, fake = _pair(real, fake)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    obs_r, obs_f = _observables(observables, real, fake)
    paths = []
    labels = (f"real ({len(real)})", f"generated ({len(fake)})")
    colours = ("k", "tab:red")

    names = list(obs_r)
    ncol = min(3, max(1, len(names)))
    nrow = max(1, -(-len(names) // ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.4 * nrow), squeeze=False)
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.ravel(), names, strict=False):
        a = np.asarray(obs_r[name], dtype=np.float64).ravel()
        b = np.asarray(obs_f[name], dtype=np.float64).ravel()
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        both = np.concatenate([a, b])
        if len(both):
            lo, hi = np.percentile(both, [0.5, 99.5])
            bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
            for v, label, colour in zip((a, b), labels, colours, strict=True):
                if len(v):
                    ax.hist(v, bins=bins, density=True, histtype="step", lw=1.5, color=colour,
                            label=label)
        ax.set_xlabel(name)
        ax.set_ylabel("density")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Jet observables: real vs WGAN-GP generated", fontsize=10)
    fig.tight_layout()
    paths.append(_save(fig, out_dir / "gan_observables.png"))

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    pr, pf = _nonzero_pixels(real), _nonzero_pixels(fake)
    both = np.concatenate([pr, pf])
    if len(both):
        lo, hi = float(both.min()), float(both.max())
        bins = np.logspace(np.log10(lo), np.log10(hi if hi > lo else lo * 10), 60)
        for v, label, colour, a in zip((pr, pf), labels, colours, (real, fake), strict=True):
            if len(v):
                ax.hist(v, bins=bins, density=True, histtype="step", lw=1.5, color=colour,
                        label=f"{label}, {np.mean(a > 0):.1%} of pixels non-zero")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no non-zero pixels", ha="center", transform=ax.transAxes)
    ax.set_xlabel("pixel intensity (non-zero pixels)")
    ax.set_ylabel("density")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    paths.append(_save(fig, out_dir / "gan_pixel_intensity.png"))

    mr, mf = real.mean(axis=0), fake.mean(axis=0)
    n_ch = real.shape[1]
    fig, axes = plt.subplots(n_ch, 3, figsize=(11, 3.4 * n_ch), squeeze=False)
    for c in range(n_ch):
        norm = _log_norm(mr[c], mf[c])
        for ax, img, title in zip(axes[c, :2], (mr[c], mf[c]), ("real", "generated"),
                                  strict=True):
            im = ax.imshow(img, norm=norm, cmap=_cmap(), origin="lower")
            ax.set_title(f"mean {title} image, channel {c}", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046)
        diff = mf[c] - mr[c]
        lim = float(np.abs(diff).max()) or 1.0
        im = axes[c, 2].imshow(diff, cmap="RdBu_r", vmin=-lim, vmax=lim, origin="lower")
        axes[c, 2].set_title(f"generated - real, channel {c}", fontsize=9)
        fig.colorbar(im, ax=axes[c, 2], fraction=0.046)
    fig.tight_layout()
    paths.append(_save(fig, out_dir / "gan_mean_images.png"))

    k = min(5, len(real), len(fake))
    fig, axes = plt.subplots(2, k, figsize=(2.6 * k, 5.4), squeeze=False)
    ex_r, ex_f = real[:k].sum(axis=1), fake[:k].sum(axis=1)
    norm = _log_norm(ex_r, ex_f)
    for row, (imgs, title) in enumerate(((ex_r, "real"), (ex_f, "generated"))):
        for i in range(k):
            axes[row, i].imshow(imgs[i], norm=norm, cmap=_cmap(), origin="lower")
            axes[row, i].set_title(f"{title} #{i}", fontsize=8)
            axes[row, i].set_xticks([])
            axes[row, i].set_yticks([])
    fig.suptitle("Example images (channels summed, log colour scale)", fontsize=10)
    fig.tight_layout()
    paths.append(_save(fig, out_dir / "gan_examples.png"))
    return paths
