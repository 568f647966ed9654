"""Plots shared by every model report: training history, ROC, confusion, efficiency curves,
residuals, bars and distributions (domain plots live in their domain, e.g. trigkit.l0.plots).

Every function writes one PNG atomically and returns its path. Importing this module selects
matplotlib's Agg backend before pyplot is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.colors import LogNorm
from scipy.stats import norm

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .io import save_figure_atomic  # noqa: E402


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save ``fig`` atomically to ``path`` and close it."""
    out = save_figure_atomic(fig, path, dpi=dpi)
    plt.close(fig)
    return out


# ------------------------------------------------------------------------ model-report plots

_SERIES_COLOURS = ("tab:blue", "tab:red", "tab:green", "tab:orange", "tab:purple", "tab:brown",
                   "tab:pink", "tab:gray", "tab:olive", "tab:cyan")
_SERIES_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "*")
_HISTORY_FIXED = ("epoch", "train_loss", "val_loss")


def _style(i: int) -> tuple[str, str]:
    return _SERIES_COLOURS[i % len(_SERIES_COLOURS)], _SERIES_MARKERS[i % len(_SERIES_MARKERS)]


def _is_number(v: Any) -> bool:
    numeric = isinstance(v, int | float | np.integer | np.floating)
    return numeric and not isinstance(v, bool | np.bool_)


def plot_training_history(history: list[dict[str, Any]], path: str | Path) -> Path:
    """Loss curves per epoch (left; log y when all positive) and the other numeric metrics
    (right, e.g. ``val_accuracy``; a learning rate ``lr`` goes on a log-scaled twin axis)."""
    if not history:
        raise ValueError("history is empty; nothing to plot")
    epochs = np.asarray([h.get("epoch", i) for i, h in enumerate(history)], dtype=float)

    def column(key: str) -> np.ndarray:
        return np.asarray([float(h[key]) if _is_number(h.get(key)) else np.nan for h in history])

    extra = []
    for h in history:
        for k, v in h.items():
            if k not in _HISTORY_FIXED and k not in extra and _is_number(v):
                extra.append(k)
    lr_keys = [k for k in extra if k in ("lr", "learning_rate")]
    metrics = [k for k in extra if k not in lr_keys]
    n_panels = 2 if extra else 1
    fig, axes = plt.subplots(1, n_panels, figsize=(6 * n_panels, 4.2), squeeze=False)
    ax = axes[0, 0]
    losses = []
    for key, colour in (("train_loss", "tab:blue"), ("val_loss", "tab:red")):
        y = column(key)
        if np.isfinite(y).any():
            ax.plot(epochs, y, "o-", ms=3, color=colour, label=key.replace("_", " "))
            losses.append(y[np.isfinite(y)])
    if losses and all((v > 0).all() for v in losses):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3, which="both")
    if losses:
        ax.legend(fontsize=8)
    ax.set_title("Loss", fontsize=9)
    if extra:
        ax2 = axes[0, 1]
        for i, key in enumerate(metrics):
            colour, marker = _style(i)
            ax2.plot(epochs, column(key), "-", marker=marker, ms=3, color=colour,
                     label=key.replace("_", " "))
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("metric")
        ax2.grid(alpha=0.3)
        handles, labels = ax2.get_legend_handles_labels()
        if lr_keys:
            twin = ax2.twinx() if metrics else ax2
            for key in lr_keys:
                y = column(key)
                twin.plot(epochs, y, "--", color="0.4", lw=1, label=key)
                if (y[np.isfinite(y)] > 0).all():
                    twin.set_yscale("log")
            twin.set_ylabel("learning rate")
            h2, l2 = twin.get_legend_handles_labels()
            if twin is not ax2:
                handles, labels = handles + h2, labels + l2
        # below the panel: the twin axis would draw its curve over a legend inside ax2
        (twin if lr_keys else ax2).legend(handles, labels, fontsize=8, loc="upper center",
                                          bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
        ax2.set_title("Metrics", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_roc(
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: str | Path, title: str = "",
    points: dict[str, tuple[float, float]] | None = None, log_x: bool = False,
) -> Path:
    """ROC curves ``name -> (fpr, tpr, auc)``: signal efficiency versus background efficiency
    (fake rate), AUC in the legend; ``points`` marks working points ``name -> (fpr, tpr)``, such
    as the standard algorithm; ``log_x`` puts the fake rate on a log axis."""
    fig, ax = plt.subplots(figsize=(6, 5))
    for i, (name, (fpr, tpr, auc)) in enumerate(curves.items()):
        colour, _ = _style(i)
        fpr, tpr = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
        ax.plot(fpr, tpr, "-", lw=1.5, color=colour, label=f"{name} (AUC = {auc:.4f})")
    for j, (name, (fx, ty)) in enumerate((points or {}).items()):
        _, marker = _style(j + 1)
        ax.plot([fx], [ty], marker, ms=8, color="k", mfc="none" if j % 2 else "k",
                label=f"{name} ({ty:.3f} at {fx:.3g})", ls="none")
    if log_x:
        pos = [np.asarray(f, dtype=float) for f, _, _ in curves.values()]
        pos += [np.asarray([p[0]], dtype=float) for p in (points or {}).values()]
        vals = np.concatenate(pos) if pos else np.zeros(0)
        vals = vals[np.isfinite(vals) & (vals > 0)]
        ax.set_xscale("log")
        ax.set_xlim(max(vals.min() * 0.5, 1e-7) if vals.size else 1e-4, 1.0)
    else:
        ax.plot([0, 1], [0, 1], ":", color="0.6", lw=1, label="random")
        ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("background efficiency (fake rate)")
    ax.set_ylabel("signal efficiency")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_confusion(
    matrix: np.ndarray, class_names: list[str], path: str | Path, normalise: bool = True,
) -> Path:
    """Annotated confusion matrix heatmap (rows = true class); ``normalise`` divides each row by
    its total, so the diagonal is the per-class efficiency."""
    m = np.asarray(matrix, dtype=float)
    k = len(class_names)
    if m.shape != (k, k):
        raise ValueError(f"matrix has shape {m.shape} but class_names has {k} names")
    totals = m.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shown = np.where(totals > 0, m / totals, np.nan) if normalise else m
    size = max(4.0, 0.9 * k + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.5, size), layout="constrained")
    vmax = 1.0 if normalise else max(float(np.nanmax(shown)) if np.isfinite(shown).any() else 1, 1)
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=vmax)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04,
                 label="fraction of true class" if normalise else "events")
    for i in range(k):
        for j in range(k):
            v = shown[i, j]
            text = "-" if not np.isfinite(v) else (f"{v:.3f}" if normalise else f"{int(v)}")
            dark = np.isfinite(v) and v > 0.6 * vmax
            ax.text(j, i, text, ha="center", va="center", fontsize=9 if k <= 6 else 7,
                    color="white" if dark else "black")
    ax.set_xticks(range(k), class_names, rotation=30, ha="right")
    ax.set_yticks(range(k), [f"{n} ({int(t)})" for n, t in zip(class_names, totals[:, 0],
                                                                strict=True)])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (events)")
    ax.set_title("Confusion matrix" + (", row-normalised" if normalise else ""), fontsize=9)
    return save_figure(fig, path)


def plot_efficiency_vs_pt(
    series: dict[str, dict[str, list[float]]], path: str | Path,
    threshold_gev: float | None = None, title: str = "",
) -> Path:
    """Efficiency versus pT for several ``baseline.turn_on`` results on one plot, each series
    with its own colour and marker (e.g. network and baseline, prompt and non-pointing)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, (name, t) in enumerate(series.items()):
        colour, marker = _style(i)
        lo, hi = np.asarray(t["pt_lo"], dtype=float), np.asarray(t["pt_hi"], dtype=float)
        eff = np.asarray(t["eff"], dtype=float)
        ok = np.isfinite(eff)  # empty bins have NaN efficiency
        ax.errorbar(0.5 * (lo + hi)[ok], eff[ok], xerr=0.5 * (hi - lo)[ok],
                    yerr=[np.asarray(t["err_lo"], dtype=float)[ok],
                          np.asarray(t["err_hi"], dtype=float)[ok]],
                    fmt=marker, ms=4, color=colour, mfc="none" if i % 2 else colour, lw=1,
                    label=name)
    if threshold_gev is not None:
        ax.axvline(threshold_gev, color="0.3", ls=":", lw=1,
                   label=f"threshold {threshold_gev:g} GeV")
    ax.set_xlabel("muon pT [GeV]")
    ax.set_ylabel("trigger efficiency")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_residuals(
    series: dict[str, np.ndarray], path: str | Path, fit: dict[str, dict] | None = None,
    range_cm: tuple[float, float] = (-40, 40), xlabel: str = "predicted - true [cm]",
    bins: int = 80, title: str = "", log_y: bool = False,
) -> Path:
    """Overlaid residual histograms (step) with the core Gaussian of each series, from
    ``evaluate.core_gaussian_fit`` results in ``fit``, drawn over its fit window (solid) and
    beyond (dotted), mean and sigma in the legend. Entries outside ``range_cm`` are counted in
    the legend; non-finite residuals (failed predictions) are left out."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    edges = np.linspace(range_cm[0], range_cm[1], bins + 1)
    width = edges[1] - edges[0]
    for i, (name, r) in enumerate(series.items()):
        colour, _ = _style(i)
        r = np.asarray(r, dtype=float)
        r = r[np.isfinite(r)]
        outside = np.count_nonzero((r < range_cm[0]) | (r > range_cm[1]))
        label = f"{name} (N={r.size}" + (f", {outside} outside" if outside else "") + ")"
        ax.hist(r, bins=edges, histtype="step", color=colour, lw=1.3, label=label)
        f = (fit or {}).get(name)
        if f is None or not np.isfinite(f.get("sigma", np.nan)) or f["sigma"] <= 0:
            continue
        mu, sig, ns = f["mean"], f["sigma"], f.get("n_sigma", 2.0)
        # normalise the Gaussian to the entries in its fit window
        n_win = np.count_nonzero(np.abs(r - mu) <= ns * sig)
        amp = n_win / (norm.cdf(ns) - norm.cdf(-ns)) * width
        x_all = np.linspace(max(mu - 4 * sig, range_cm[0]), min(mu + 4 * sig, range_cm[1]), 400)
        inside = np.abs(x_all - mu) <= ns * sig
        y_all = amp * norm.pdf(x_all, mu, sig)
        ax.plot(x_all, np.where(inside, y_all, np.nan), "-", color=colour, lw=1.6,
                label=f"core fit: $\\mu$ = {mu:.2f}, $\\sigma$ = {sig:.2f}"
                + (f" $\\pm$ {f['sigma_err']:.2f}" if np.isfinite(f.get("sigma_err", np.nan))
                   else ""))
        ax.plot(x_all, np.where(inside, np.nan, y_all), ":", color=colour, lw=1.2)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlim(*range_cm)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"events / {width:.3g}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_regression_scatter(
    true: np.ndarray, predicted: np.ndarray, path: str | Path, label: str = "", bins: int = 60,
) -> Path:
    """2D histogram of predicted versus true (log colour scale) with the diagonal; failed
    (non-finite) predictions are counted in the title."""
    t = np.asarray(true, dtype=float).ravel()
    p = np.asarray(predicted, dtype=float).ravel()
    if t.size != p.size:
        raise ValueError(f"true and predicted must have the same length, got {t.size} and {p.size}")
    ok = np.isfinite(t) & np.isfinite(p)
    fig, ax = plt.subplots(figsize=(6, 5.2))
    if ok.any():
        lo = float(min(t[ok].min(), np.percentile(p[ok], 0.5)))
        hi = float(max(t[ok].max(), np.percentile(p[ok], 99.5)))
        if hi <= lo:
            lo, hi = lo - 1.0, hi + 1.0
        h = ax.hist2d(t[ok], p[ok], bins=bins, range=[[lo, hi], [lo, hi]], cmap="viridis",
                      norm=LogNorm(), cmin=1)
        fig.colorbar(h[3], ax=ax, label="events")
        ax.plot([lo, hi], [lo, hi], "--", color="tab:red", lw=1, label="predicted = true")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.legend(fontsize=8, loc="upper left")
    unit = f" {label}" if label else ""
    ax.set_xlabel(f"true{unit}")
    ax.set_ylabel(f"predicted{unit}")
    ax.grid(alpha=0.3)
    n_bad = int(np.count_nonzero(~ok))
    ax.set_title(f"{int(ok.sum())} events" + (f", {n_bad} failed (not shown)" if n_bad else ""),
                 fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_bars(values: dict[str, float], path: str | Path, xlabel: str, title: str = "",
              errors: dict[str, float] | None = None) -> Path:
    """Horizontal bar chart, largest value on top (feature importance, resources)."""
    names = sorted(values, key=lambda k: values[k])
    fig, ax = plt.subplots(figsize=(6.5, 0.28 * len(names) + 1.4))
    err = [errors[n] for n in names] if errors else None
    ax.barh(names, [values[n] for n in names], xerr=err, color="tab:blue", alpha=0.8)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3, axis="x")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_curves(series: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path,
                xlabel: str, ylabel: str, title: str = "", log_x: bool = False,
                hline: float | None = None) -> Path:
    """Several y(x) series with markers (AUC vs S/sqrt(B), efficiency vs pT, ...)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.6))
    for i, (name, (x, y)) in enumerate(series.items()):
        colour, marker = _style(i)
        ax.plot(np.asarray(x, float), np.asarray(y, float), "-" + marker, color=colour,
                label=name, ms=5, lw=1.2)
    if hline is not None:
        ax.axhline(hline, color="0.5", ls=":", lw=1)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_score_distributions(scores: dict[str, np.ndarray], path: str | Path, xlabel: str,
                             title: str = "", log_y: bool = True) -> Path:
    """Normalised histograms of a discriminant for several classes."""
    fig, ax = plt.subplots(figsize=(6.5, 4.6))
    finite = [np.asarray(s, float)[np.isfinite(s)] for s in scores.values()]
    allv = np.concatenate(finite) if finite else np.zeros(1)
    lo, hi = np.percentile(allv, [0.5, 99.5]) if allv.size else (0, 1)
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 50)
    for i, (name, s) in enumerate(zip(scores, finite, strict=True)):
        colour, _ = _style(i)
        ax.hist(np.clip(s, lo, hi), bins=bins, histtype="step", density=True, color=colour,
                lw=1.5, label=f"{name} ({len(s)})")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_sculpting(mass: np.ndarray, score: np.ndarray, cut: float, path: str | Path,
                   title: str = "", xlabel: str = "jet mass [GeV]") -> Path:
    """Mass sculpting of a background by a cut on ``score``: the score's mean in mass bins
    (left) and the mass distribution of all, passing and failing events (right)."""
    mass, score = np.asarray(mass, float), np.asarray(score, float)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    edges = np.quantile(mass, np.linspace(0, 1, 16))
    idx = np.clip(np.searchsorted(edges[1:-1], mass, side="right"), 0, len(edges) - 2)
    centres = 0.5 * (edges[1:] + edges[:-1])
    means = [np.mean(score[idx == k]) if np.any(idx == k) else np.nan
             for k in range(len(centres))]
    a1.plot(centres, means, "o-", color="tab:blue")
    a1.set_xlabel(xlabel)
    a1.set_ylabel("mean anomaly score")
    a1.grid(alpha=0.3)
    bins = np.linspace(np.percentile(mass, 0.5), np.percentile(mass, 99.5), 40)
    passed = score >= cut
    for sel, name, colour in ((np.ones_like(passed), "all", "k"), (passed, "pass", "tab:red"),
                              (~passed, "fail", "tab:blue")):
        a2.hist(mass[sel], bins=bins, histtype="step", density=True, color=colour, lw=1.5,
                label=f"{name} ({int(sel.sum())})")
    a2.set_xlabel(xlabel)
    a2.set_ylabel("density")
    a2.legend(fontsize=8)
    a2.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)

