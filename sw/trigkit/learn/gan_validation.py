"""Validation of generated images against real ones: jet observables and pixel intensities
compared by KS statistic and Wasserstein distance, the mean images, and plots of all of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.colors import LogNorm
from scipy.stats import ks_2samp, wasserstein_distance

from trigkit.core.errors import TrigkitError
from trigkit.core.plots import plt, save_figure

from .metrics import roc_auc

Observables = Callable[[np.ndarray], dict[str, np.ndarray]]
PIXELS = "pixel intensity (non-zero)"
MEAN_IMAGE = "mean image"
_MAX_PIXELS = 1_000_000  # pixel values compared per sample (random subset beyond that)
COLOURS = ("k", "tab:red")


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


#: Epochs of the two-sample classifiers (fixed: the test is deterministic for a seed).
TWO_SAMPLE_EPOCHS = 30


def _two_sample_net(n_in: int | tuple[int, ...]) -> torch.nn.Module:
    nn = torch.nn
    if isinstance(n_in, int):
        return nn.Sequential(nn.Linear(n_in, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                             nn.Linear(64, 1))
    c, h, w = n_in
    return nn.Sequential(nn.Conv2d(c, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * (h // 4) * (w // 4), 32), nn.ReLU(),
                         nn.Linear(32, 1))


def _fit_and_score(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray,
                   seed: int) -> np.ndarray:
    """Train the two-sample classifier on rows ``train`` (standardised on them), score
    rows ``test``."""
    torch.manual_seed(seed)
    mu = x[train].mean(axis=0) if x.ndim == 2 else 0.0
    sd = x[train].std(axis=0) + 1e-6 if x.ndim == 2 else 1.0
    xt = torch.from_numpy(((x - mu) / sd).astype(np.float32))
    yt = torch.from_numpy(y.astype(np.float32))
    net = _two_sample_net(x.shape[1] if x.ndim == 2 else x.shape[1:])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.from_numpy(train)
    for _ in range(TWO_SAMPLE_EPOCHS):
        perm = idx[torch.randperm(len(idx), generator=gen)]
        for i in range(0, len(perm), 128):
            b = perm[i:i + 128]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(xt[b])[:, 0], yt[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        return net(xt[torch.from_numpy(test)])[:, 0].numpy()


def two_sample_auc(real: np.ndarray, fake: np.ndarray, seed: int = 0) -> float:
    """Classifier two-sample test: the ROC AUC of a classifier trained to tell ``real`` from
    ``fake`` rows, on rows it was not trained on (two folds, each trained on one half and
    scored on the other; the AUC of all out-of-fold scores). 0.5: indistinguishable.
    Rows are feature vectors (N, F; a 64-64 MLP on standardised features) or images
    (N, C, H, W; a two-layer CNN on the values as given). Deterministic for a seed."""
    real, fake = np.asarray(real), np.asarray(fake)
    if real.ndim not in (2, 4) or real.shape[1:] != fake.shape[1:] or min(len(real),
                                                                              len(fake)) < 8:
        raise TrigkitError(f"two_sample_auc needs two samples of >= 8 rows of the same shape, "
                           f"(N, F) or (N, C, H, W); got {real.shape} and {fake.shape}")
    x = np.concatenate([real, fake]).astype(np.float32)
    y = np.r_[np.zeros(len(real)), np.ones(len(fake))]
    order = np.random.default_rng(seed).permutation(len(x))
    folds = (order[:len(x) // 2], order[len(x) // 2:])
    scores = np.empty(len(x))
    for k, (train, test) in enumerate((folds, folds[::-1])):
        scores[test] = _fit_and_score(x, y, train, test, seed + k)
    return float(roc_auc(y, scores))


def _log_norm(*arrays: np.ndarray):
    """A shared logarithmic colour scale over four decades, or None if all are zero."""
    vmax = max(float(np.max(a)) for a in arrays)
    return LogNorm(vmin=vmax * 1e-4, vmax=vmax, clip=True) if vmax > 0 else None


def _cmap():
    """viridis with empty (zero) pixels in its lowest colour rather than blank."""
    cmap = matplotlib.colormaps["viridis"]
    return cmap.with_extremes(bad=cmap(0.0))


def plot_gan_validation(real: np.ndarray, fake: np.ndarray, observables: Observables,
                        out_dir: Path) -> list[Path]:
    """Validation plots into ``out_dir`` (created): ``gan_observables.png`` (density overlays
    per observable), ``gan_pixel_intensity.png`` (non-zero pixels, log-log),
    ``gan_mean_images.png`` (real, generated and difference per channel) and
    ``gan_examples.png`` (a few real and generated images). Returns the paths."""
    real, fake = _pair(real, fake)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = (f"real ({len(real)})", f"generated ({len(fake)})")
    return [_plot_observables(*_observables(observables, real, fake), labels, out_dir),
            _plot_pixel_intensities(real, fake, labels, out_dir),
            _plot_mean_images(real, fake, out_dir), _plot_examples(real, fake, out_dir)]


def _plot_observables(obs_r: dict, obs_f: dict, labels: tuple[str, str], out_dir: Path
                      ) -> Path:
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
            for v, label, colour in zip((a, b), labels, COLOURS, strict=True):
                if len(v):
                    ax.hist(v, bins=bins, density=True, histtype="step", lw=1.5, color=colour,
                            label=label)
        ax.set_xlabel(name)
        ax.set_ylabel("density")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Jet observables: real vs WGAN-GP generated", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_dir / "gan_observables.png")


def _plot_pixel_intensities(real: np.ndarray, fake: np.ndarray, labels: tuple[str, str],
                            out_dir: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    pr, pf = _nonzero_pixels(real), _nonzero_pixels(fake)
    both = np.concatenate([pr, pf])
    if len(both):
        lo, hi = float(both.min()), float(both.max())
        bins = np.logspace(np.log10(lo), np.log10(hi if hi > lo else lo * 10), 60)
        for v, label, colour, a in zip((pr, pf), labels, COLOURS, (real, fake), strict=True):
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
    return save_figure(fig, out_dir / "gan_pixel_intensity.png")


def _plot_mean_images(real: np.ndarray, fake: np.ndarray, out_dir: Path) -> Path:
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
    return save_figure(fig, out_dir / "gan_mean_images.png")


def _plot_examples(real: np.ndarray, fake: np.ndarray, out_dir: Path) -> Path:
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
    return save_figure(fig, out_dir / "gan_examples.png")
