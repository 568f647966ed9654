"""Metrics shared by every model report: classification, ROC, working points and
regression resolution (robust core Gaussian fits).

Pure numpy/scipy (no torch), so the metrics can be recomputed from saved predictions. Inputs are
validated: arrays that must pair up event by event raise :class:`ValueError` naming both
arguments when their lengths differ.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import ndtr
from scipy.stats import rankdata

__all__ = [
    "accuracy", "confusion_matrix", "core_gaussian_fit", "cut_at_fake_rate", "multiclass_auc",
    "regression_metrics", "roc_auc", "roc_curve", "working_point_metrics",
]


# --------------------------------------------------------------------------- validation helpers


def _as_1d(name: str, x: Any) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _same_length(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if len(a) != len(b):
        raise ValueError(
            f"{name_a} and {name_b} must have the same length, got {len(a)} and {len(b)}"
        )


def _as_labels(name: str, x: Any) -> np.ndarray:
    arr = _as_1d(name, x)
    integral = np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)
    if arr.size and not integral:
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr)) \
                or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integer class indices")
    return arr.astype(np.int64)


def _as_binary(name: str, x: Any) -> np.ndarray:
    arr = _as_1d(name, x)
    if arr.dtype != np.bool_:
        bad = ~np.isin(arr, (0, 1))
        if bad.any():
            raise ValueError(f"{name} must be boolean or 0/1, found value {arr[bad][0]!r}")
    return arr.astype(bool)


def _as_scores(name: str, x: Any) -> np.ndarray:
    arr = _as_1d(name, x).astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains {int(np.count_nonzero(~np.isfinite(arr)))} "
                         "non-finite values (NaN/inf); remove or replace them first")
    return arr


# --------------------------------------------------------------------------------- classification


def accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Fraction of events whose predicted class equals the true class."""
    lab = _as_labels("labels", labels)
    pred = _as_labels("predicted", predicted)
    _same_length("labels", lab, "predicted", pred)
    if lab.size == 0:
        raise ValueError("labels and predicted are empty; accuracy is undefined")
    return float(np.count_nonzero(lab == pred) / lab.size)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``(n_classes, n_classes)``: entry ``[i, j]`` = events of true class ``i`` predicted
    as class ``j`` (rows are the true class)."""
    if int(n_classes) != n_classes or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    n_classes = int(n_classes)
    lab = _as_labels("labels", labels)
    pred = _as_labels("predicted", predicted)
    _same_length("labels", lab, "predicted", pred)
    for name, arr in (("labels", lab), ("predicted", pred)):
        if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(f"{name} has values outside [0, {n_classes - 1}] "
                             f"(min {arr.min()}, max {arr.max()}); check n_classes")
    flat = np.bincount(lab * n_classes + pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64)


def _signal_and_score(is_signal: Any, score: Any) -> tuple[np.ndarray, np.ndarray]:
    sig = _as_binary("is_signal", is_signal)
    sc = _as_scores("score", score)
    _same_length("is_signal", sig, "score", sc)
    return sig, sc


def roc_curve(
    is_signal: np.ndarray, score: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ROC curve: ``fpr, tpr, thresholds``, one point per distinct score.

    sklearn semantics (without dropping collinear points): an event passes if ``score >=
    threshold``; thresholds decrease, the first is ``+inf`` (point (0, 0)) and the last is the
    lowest score (point (1, 1)). Tied scores form a single point, so the curve is tie-aware.
    ``fpr`` (``tpr``) is all NaN when there is no background (signal) event.
    """
    sig, sc = _signal_and_score(is_signal, score)
    order = np.argsort(-sc, kind="stable")
    sc_sorted = sc[order]
    sig_sorted = sig[order]
    # last index of each run of equal scores (scores sorted descending)
    last = np.r_[np.nonzero(np.diff(sc_sorted))[0], sc_sorted.size - 1] if sc_sorted.size else \
        np.zeros(0, dtype=np.int64)
    tps = np.r_[0, np.cumsum(sig_sorted)[last]].astype(np.float64)
    fps = np.r_[0, np.cumsum(~sig_sorted)[last]].astype(np.float64)
    thresholds = np.r_[np.inf, sc_sorted[last]]
    n_pos, n_neg = tps[-1], fps[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = tps / n_pos if n_pos > 0 else np.full_like(tps, np.nan)
        fpr = fps / n_neg if n_neg > 0 else np.full_like(fps, np.nan)
    return fpr, tpr, thresholds


def roc_auc(is_signal: np.ndarray, score: np.ndarray) -> float:
    """Exact area under the ROC curve (Mann-Whitney U / (n_sig n_bkg)); a signal-background pair
    with equal scores counts 1/2. NaN if either class is empty."""
    sig, sc = _signal_and_score(is_signal, score)
    n_pos = int(np.count_nonzero(sig))
    n_neg = sig.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(sc, method="average")  # 1-based, ties get the mean rank
    u = float(ranks[sig].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def multiclass_auc(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """One-vs-rest AUC of each class column of ``probs`` (N, K) and their unweighted mean.

    ``per_class[k]`` is NaN when class ``k`` is absent from ``labels`` (or is the only class
    present); ``macro`` averages the classes whose AUC is defined (NaN if none is).
    """
    lab = _as_labels("labels", labels)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must have shape (N, n_classes), got {p.shape}")
    _same_length("labels", lab, "probs", p)
    n_classes = p.shape[1]
    if lab.size and (lab.min() < 0 or lab.max() >= n_classes):
        raise ValueError(f"labels has values outside [0, {n_classes - 1}] but probs has "
                         f"{n_classes} columns")
    per_class = [roc_auc(lab == k, p[:, k]) for k in range(n_classes)]
    finite = [a for a in per_class if not math.isnan(a)]
    macro = float(np.mean(finite)) if finite else math.nan
    return {"macro": macro, "per_class": per_class}


def cut_at_fake_rate(background_scores: np.ndarray, fake_rate: float) -> float:
    """Smallest cut ``t`` with ``mean(background_scores >= t) <= fake_rate``.

    The cut is chosen among the background score values (the ROC thresholds) and, if even the
    largest one lets too much background through (always the case for ``fake_rate == 0``), it is
    ``np.nextafter(max, +inf)``, just above the largest background score. ``fake_rate >= 1``
    returns the smallest background score (everything passes).
    """
    bkg = _as_scores("background_scores", background_scores)
    if bkg.size == 0:
        raise ValueError("background_scores is empty; a cut cannot be set")
    fake_rate = float(fake_rate)
    if not 0.0 <= fake_rate <= 1.0:
        raise ValueError(f"fake_rate must lie in [0, 1], got {fake_rate!r}")
    s = np.sort(bkg)
    values = np.unique(s)
    n_ge = s.size - np.searchsorted(s, values, side="left")  # background passing t = value
    ok = n_ge / s.size <= fake_rate  # fraction computed exactly as the caller would
    if not ok.any():
        return float(np.nextafter(values[-1], np.inf))
    return float(values[np.argmax(ok)])


# -------------------------------------------------------------------------------------- regression


def _binned_gauss(edges: np.ndarray, norm: float, mean: float, sigma: float) -> np.ndarray:
    z = (edges - mean) / abs(sigma)
    return norm * np.diff(ndtr(z))


class _Grid:
    """Fixed histogram grid (origin, bin width) shared by the iterations of a core fit, so that
    the histogram only changes when the window gains or loses whole bins and the iteration can
    reach an exact fixed point instead of jittering with the bin edges."""

    def __init__(self, origin: float, sigma: float, n_sigma: float, n_window: int):
        n_bins = int(np.clip(n_window // 20, 8, 60))
        self.origin, self.sigma = origin, sigma
        self.width = 2.0 * n_sigma * sigma / n_bins

    def key(self, mean: float, sigma: float, n_sigma: float) -> tuple[int, int]:
        """First and last grid edge (as indices) of the window mean +- n_sigma*sigma."""
        k_lo = math.floor((mean - n_sigma * sigma - self.origin) / self.width + 0.5)
        k_hi = math.floor((mean + n_sigma * sigma - self.origin) / self.width + 0.5)
        return k_lo, k_hi

    def edges(self, key: tuple[int, int]) -> np.ndarray:
        return self.origin + self.width * np.arange(key[0], key[1] + 1)


def _fit_window(
    x: np.ndarray, mean: float, sigma: float, n_sigma: float, grid: _Grid
) -> tuple[np.ndarray, np.ndarray] | None:
    """Fit a Gaussian to the histogram of ``x`` over the grid bins covering mean +- n_sigma*sigma
    (bin-integrated model; Neyman chi2, then Pearson chi2 with the first fit as variance).
    Returns (popt = [norm, mean, sigma], perr) or None if the fit fails or is implausible."""
    lo, hi = mean - n_sigma * sigma, mean + n_sigma * sigma
    edges = grid.edges(grid.key(mean, sigma, n_sigma))
    if edges.size < 5:  # fewer than 4 bins for 3 parameters
        return None
    counts = np.histogram(x, bins=edges)[0].astype(np.float64)
    n_core = counts.sum()
    if n_core < 10:
        return None
    xdata = np.arange(counts.size)

    def model(_xdata, norm, mu, sig):
        return _binned_gauss(edges, norm, mu, sig)

    p0 = (n_core / max(math.erf(n_sigma / math.sqrt(2)), 1e-3), mean, sigma)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            popt, _ = curve_fit(model, xdata, counts, p0=p0, sigma=np.sqrt(np.maximum(counts, 1)),
                                absolute_sigma=True, maxfev=5000)
            var = np.maximum(model(None, *popt), 0.5)
            popt, pcov = curve_fit(model, xdata, counts, p0=popt, sigma=np.sqrt(var),
                                   absolute_sigma=True, maxfev=5000)
    except (RuntimeError, ValueError, np.linalg.LinAlgError):
        return None
    popt = np.array([popt[0], popt[1], abs(popt[2])])
    perr = np.sqrt(np.abs(np.diag(pcov)))
    span = hi - lo
    if not (np.all(np.isfinite(popt)) and np.all(np.isfinite(perr)) and popt[0] > 0
            and 0 < popt[2] < span and lo - 0.5 * span < popt[1] < hi + 0.5 * span
            and perr[1] < popt[2] and perr[2] < popt[2]):
        return None
    return popt, perr


def core_gaussian_fit(residuals: np.ndarray, n_sigma: float = 2.0, max_iter: int = 20) -> dict:
    """Robust Gaussian fit of the core of a residual distribution.

    Starts from the median and ``1.4826 * MAD``; each iteration fits a Gaussian (bin-integrated,
    ``scipy.optimize.curve_fit``) to the histogram restricted to ``mean +- n_sigma * sigma`` and
    moves the window to the fitted values. The histogram bins lie on one fixed grid, so the
    iteration stops (``converged``) when the window covers the same bins as in an earlier
    iteration, or when mean and sigma move by less than 0.1 % of sigma or by less than a tenth
    of their statistical errors. If a later
    iteration fails, the last successful fit is returned (not converged); if the first fit
    fails, the mean and standard deviation of the entries in the window are returned instead
    (``method == "window"``; the std of a window truncated at ``n_sigma`` underestimates the
    Gaussian sigma, by 12 % at 2 sigma). Non-finite residuals are ignored.

    Wide tails under the core bias ``sigma`` upward a little (about 5 % for 20 % of events in
    tails five times wider than the core at ``n_sigma = 2``).

    Returns ``mean``, ``sigma``, ``mean_err``, ``sigma_err``, ``n_core`` (entries within
    ``mean +- n_sigma * sigma``), ``converged``, plus ``n_sigma`` and ``method`` (``"fit"`` or
    ``"window"``).
    """
    x = _as_1d("residuals", residuals).astype(np.float64)
    x = x[np.isfinite(x)]
    if x.size < 10:
        raise ValueError(f"core_gaussian_fit needs at least 10 finite residuals, got {x.size}")
    if not n_sigma > 0:
        raise ValueError(f"n_sigma must be positive, got {n_sigma!r}")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter!r}")
    mean = float(np.median(x))
    sigma = 1.4826 * float(np.median(np.abs(x - mean)))
    if sigma == 0.0:
        sigma = float(np.std(x))
    out: dict[str, Any] = {"n_sigma": float(n_sigma)}
    if sigma == 0.0:  # all residuals identical: nothing to fit
        return {**out, "mean": mean, "sigma": 0.0, "mean_err": 0.0, "sigma_err": 0.0,
                "n_core": int(x.size), "converged": False, "method": "window"}

    def in_window(m: float, s: float) -> np.ndarray:
        return x[np.abs(x - m) <= n_sigma * s]

    grid = _Grid(mean, sigma, n_sigma, in_window(mean, sigma).size)
    seen: set[tuple[int, int]] = set()  # grid windows already fitted
    converged = False
    perr = None
    for _ in range(int(max_iter)):
        key = grid.key(mean, sigma, n_sigma)
        if perr is not None and key in seen:
            # Same histogram as an earlier iteration: a fixed point (or a cycle between adjacent
            # bin sets), stable at the resolution of the binning.
            converged = True
            break
        seen.add(key)
        res = _fit_window(x, mean, sigma, n_sigma, grid)
        if res is None:  # keep the last successful fit, if any, as not converged
            break
        popt, perr = res
        d_mean, d_sigma = abs(popt[1] - mean), abs(popt[2] - sigma)
        mean, sigma = float(popt[1]), float(popt[2])
        if max(d_mean, d_sigma) < 1e-3 * sigma or (d_mean < 0.1 * perr[1]
                                                    and d_sigma < 0.1 * perr[2]):
            converged = True
            break
        if not 0.67 < sigma / grid.sigma < 1.5:  # bins no longer suit the core: rebuild the grid
            grid = _Grid(mean, sigma, n_sigma, in_window(mean, sigma).size)
            seen.clear()
    if perr is not None:
        return {**out, "mean": mean, "sigma": sigma, "mean_err": float(perr[1]),
                "sigma_err": float(perr[2]), "n_core": int(in_window(mean, sigma).size),
                "converged": converged, "method": "fit"}
    core = in_window(mean, sigma)
    if core.size < 2:
        core = x
    m, s = float(np.mean(core)), float(np.std(core, ddof=1))
    return {**out, "mean": m, "sigma": s, "mean_err": s / math.sqrt(core.size),
            "sigma_err": s / math.sqrt(2 * (core.size - 1)), "n_core": int(core.size),
            "converged": False, "method": "window"}


def regression_metrics(predicted: np.ndarray, true: np.ndarray, tail_cut: float = 8.0) -> dict:
    """Resolution summary of a regression (e.g. vertex radius in cm).

    ``residual = predicted - true``; non-finite predictions are failures. Returns
    ``sigma_core_cm`` and ``mean_cm`` (:func:`core_gaussian_fit` of the finite residuals, NaN if
    fewer than 10), ``tail_frac_8cm`` (fraction of *all* events with ``|residual| > tail_cut``,
    failures counted as tail; the key is ``f"tail_frac_{tail_cut:g}cm"``), ``rms_cm`` and
    ``median_abs_cm`` (finite residuals), ``n`` and ``n_failed``.
    """
    pred = _as_1d("predicted", predicted).astype(np.float64)
    tru = _as_1d("true", true).astype(np.float64)
    _same_length("predicted", pred, "true", tru)
    if pred.size == 0:
        raise ValueError("predicted and true are empty")
    if not np.all(np.isfinite(tru)):
        raise ValueError("true contains non-finite values; select events with a defined target")
    if not tail_cut > 0:
        raise ValueError(f"tail_cut must be positive, got {tail_cut!r}")
    ok = np.isfinite(pred)
    r = pred[ok] - tru[ok]
    n, n_failed = int(pred.size), int(np.count_nonzero(~ok))
    if r.size >= 10:
        fit = core_gaussian_fit(r)
        sigma_core, mean_core = fit["sigma"], fit["mean"]
    else:
        sigma_core = mean_core = math.nan
    tail = int(np.count_nonzero(np.abs(r) > tail_cut)) + n_failed
    return {
        "sigma_core_cm": float(sigma_core),
        "mean_cm": float(mean_core),
        f"tail_frac_{tail_cut:g}cm": tail / n,
        "rms_cm": float(np.sqrt(np.mean(r**2))) if r.size else math.nan,
        "median_abs_cm": float(np.median(np.abs(r))) if r.size else math.nan,
        "n": n,
        "n_failed": n_failed,
    }


def working_point_metrics(is_signal: np.ndarray, score: np.ndarray, signal_eff: float = 0.5,
                          fake_rate: float = 0.05) -> dict[str, float]:
    """AUC, background rejection 1/eps_B at ``signal_eff`` and signal efficiency at a
    background efficiency (fake rate) ``fake_rate``. Events pass when ``score >= cut``."""
    sig_mask = _as_binary("is_signal", is_signal)
    sc = _as_scores("score", score)
    _same_length("is_signal", sig_mask, "score", sc)
    sig, bkg = np.sort(sc[sig_mask])[::-1], sc[~sig_mask]
    if sig.size == 0 or bkg.size == 0:
        raise ValueError("working points need both signal and background events")
    cut_sig = sig[max(int(math.ceil(signal_eff * sig.size)) - 1, 0)]
    eps_b = float(np.mean(bkg >= cut_sig))
    cut_bkg = cut_at_fake_rate(bkg, fake_rate)
    return {"auc": roc_auc(sig_mask, sc), "bkg_eff_at_sig_eff": eps_b,
            "bkg_rejection_at_sig_eff": 1.0 / eps_b if eps_b > 0 else float(bkg.size),
            "eff_at_fake_rate": float(np.mean(sig >= cut_bkg))}
