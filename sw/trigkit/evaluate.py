"""Evaluation metrics shared by every model report: classification, ROC, working points and
vertex-regression resolution.

Pure numpy/scipy (no torch), so the metrics can be recomputed from saved predictions. Inputs are
validated: arrays that must pair up event by event raise :class:`ValueError` naming both
arguments when their lengths differ.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

__all__ = [
    "accuracy", "confusion_matrix", "core_gaussian_fit", "cut_at_fake_rate", "multiclass_auc",
    "regression_metrics", "roc_auc", "roc_curve",
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
    from scipy.stats import rankdata

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
    from scipy.special import ndtr

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
    from scipy.optimize import OptimizeWarning, curve_fit

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


# ---------------------------------------------------------------------------------------------
# Model evaluation against the standard algorithm on the same events
# ---------------------------------------------------------------------------------------------

EVAL_BATCH = 2048


def predict_outputs(model, card, images: np.ndarray, batch: int = EVAL_BATCH) -> np.ndarray:
    """Raw network outputs (logits, or the regression value in target units) for uint8 images."""
    import torch

    from .models import to_input

    outs = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            outs.append(model(to_input(images[s:s + batch], card)).float().numpy())
    out = np.concatenate(outs) if outs else np.zeros((0, card.n_outputs), np.float32)
    if card.task == "regression":
        return out[:, 0].astype(np.float64) * card.data.target_scale
    return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    # float64: cuts placed just above a score (np.nextafter) must not round back in float32
    logits = np.asarray(logits, dtype=np.float64)
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def baseline_roads(card, sim_cfg, cache_dir=None):
    """Coincidence roads for the card's evaluation settings, calibrated once and cached."""
    import hashlib
    import json
    from pathlib import Path

    from .baseline import BaselineConfig, Roads, calibrate_roads
    from .config import from_dict, to_dict

    bcfg = from_dict(BaselineConfig, {"mode": card.evaluation.baseline_mode,
                                      "threshold_gev": card.evaluation.threshold_gev})
    key = json.dumps({"sim": sim_cfg.to_dict(), "baseline": to_dict(bcfg)}, sort_keys=True)
    cache = Path(cache_dir or Path("build") / ".cache")
    path = cache / f"roads_{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"
    if path.is_file():
        return Roads.load(path)
    cache.mkdir(parents=True, exist_ok=True)
    roads = calibrate_roads(sim_cfg, bcfg)
    roads.save(path)
    return roads


def evaluate_classification(card, model, splits, plots_dir, progress: bool = False) -> dict:
    """Accuracy, AUC and the trigger comparison with the coincidence baseline.

    The network's trigger score is 1 - P(noise). Its cut is set so that its fake rate on
    noise-only events equals the baseline's on the same events (the test split's noise events
    plus ``evaluation.noise_events`` extra ones); efficiencies are then compared on the test
    split's muon events.
    """
    from .baseline import efficiency, run_trigger, turn_on
    from .data import sim_config_for
    from .detector import LABELS
    from .plots import plot_confusion, plot_efficiency_vs_pt, plot_roc
    from .simulate import iter_chunks

    test = splits["test"]
    sim_cfg = sim_config_for(card)
    det = sim_cfg.detector
    images = test.images()
    probs = _softmax(predict_outputs(model, card, images))
    labels = test.target
    predicted = probs.argmax(axis=1)
    classes = list(card.data.classes)
    noise_class = classes.index("noise") if "noise" in classes else None
    metrics: dict[str, Any] = {
        "accuracy": accuracy(labels, predicted),
        "auc": multiclass_auc(labels, probs)["macro"],
        "auc_per_class": dict(zip(classes, multiclass_auc(labels, probs)["per_class"],
                                  strict=True)),
        "confusion": confusion_matrix(labels, predicted, len(classes)).tolist(),
        "test_events": int(len(labels)),
    }
    plot_confusion(np.asarray(metrics["confusion"]), classes, plots_dir / "confusion.png")
    if noise_class is None:
        return {"metrics": metrics, "baseline": {}}

    roads = baseline_roads(card, sim_cfg)
    base_fired, _ = run_trigger(images, det, roads)
    net_score = 1.0 - probs[:, noise_class]
    # extra noise-only events, streamed in chunks through both triggers
    noise_net, noise_base = [net_score[labels == noise_class]], [base_fired[labels == noise_class]]
    for _, chunk in iter_chunks(sim_cfg, "noise", card.evaluation.noise_events,
                                card.evaluation.seed):
        p = _softmax(predict_outputs(model, card, chunk["hits"]))
        noise_net.append(1.0 - p[:, noise_class])
        noise_base.append(run_trigger(chunk["hits"], det, roads)[0])
    noise_net_all, noise_base_all = np.concatenate(noise_net), np.concatenate(noise_base)
    base_fake = float(noise_base_all.mean())
    cut = cut_at_fake_rate(noise_net_all, base_fake)
    net_fired = net_score >= cut
    net_fake = float((noise_net_all >= cut).mean())

    truth_label = test.truth("label")
    pt = test.truth("pt")
    thr = card.evaluation.threshold_gev
    prompt = truth_label == LABELS["prompt"]
    nonpointing = truth_label == LABELS["nonpointing"]
    muon = labels != noise_class

    def trigger_metrics(fired: np.ndarray, fake: float) -> dict[str, float]:
        is_muon = muon.astype(int)
        tpr = float(fired[muon].mean()) if muon.any() else math.nan
        return {
            "eff_at_baseline_fake_rate": tpr,
            "eff_prompt_above_threshold": efficiency(fired[prompt & (pt >= thr)])[0],
            "eff_prompt": efficiency(fired[prompt])[0],
            "eff_nonpointing": efficiency(fired[nonpointing])[0],
            "fake_rate": fake,
            "fake_rate_hz": fake * 40e6,
            "accuracy": accuracy(is_muon, fired.astype(int)),  # muon vs noise decision
            "auc": 0.5 * (1.0 + tpr - fake),  # area under the one-point ROC
        }

    metrics.update({k: v for k, v in trigger_metrics(net_fired, net_fake).items()
                    if k not in ("accuracy", "auc")})
    metrics["trigger_accuracy"] = accuracy(muon.astype(int), net_fired.astype(int))
    metrics["trigger_cut"] = float(cut)
    metrics["noise_events_for_fake_rate"] = int(noise_net_all.size)
    baseline = {"algorithm": f"coincidence {card.evaluation.baseline_mode}-pT, "
                f"{thr:g} GeV roads", **trigger_metrics(base_fired, base_fake)}

    edges = np.array([3, 5, 7.5, 10, 12.5, 15, 17.5, 20, 22.5, 25, 30, 35, 40, 45, 50.0])
    series = {}
    for name, sel in (("prompt", prompt), ("non-pointing", nonpointing)):
        series[f"network, {name}"] = turn_on(pt[sel], net_fired[sel], edges)
        series[f"baseline, {name}"] = turn_on(pt[sel], base_fired[sel], edges)
    plot_efficiency_vs_pt(series, plots_dir / "turn_on.png", threshold_gev=thr,
                          title=f"{card.name} vs coincidence baseline at equal fake rate "
                          f"({base_fake * 40e6:.3g} Hz/sector)")
    fpr, tpr, _ = roc_curve(muon, net_score)
    curves = {"muon vs noise": (fpr, tpr, roc_auc(muon, net_score))}
    if "prompt" in classes and "nonpointing" in classes:
        sel = prompt | nonpointing
        s = probs[sel, classes.index("nonpointing")]
        f2, t2, _ = roc_curve(nonpointing[sel], s)
        curves["non-pointing vs prompt"] = (f2, t2, roc_auc(nonpointing[sel], s))
    plot_roc(curves, plots_dir / "roc.png", title=card.name, log_x=True,
             points={"coincidence baseline (muon vs noise)":
                     (baseline["fake_rate"], baseline["eff_at_baseline_fake_rate"])})
    return {"metrics": metrics, "baseline": baseline}


def evaluate_regression(card, model, splits, plots_dir, progress: bool = False) -> dict:
    """Resolution metrics of the network and of the analytic two-track vertex fit."""
    from .data import sim_config_for
    from .plots import plot_regression_scatter, plot_residuals
    from .vertexfit import fit_vertex

    test = splits["test"]
    images = test.images()
    pred = predict_outputs(model, card, images)
    true = test.target.astype(np.float64)
    metrics = {**regression_metrics(pred, true), "test_events": int(len(true))}
    fit = fit_vertex(images, sim_config_for(card).detector)
    baseline = {"algorithm": "analytic two-track vertex fit",
                **regression_metrics(fit["r_cm"], true),
                "fit_success": float(np.mean(fit["ok"]))}
    res_net = pred - true
    res_fit = fit["r_cm"] - true
    fits = {}
    for name, r in (("network", res_net), ("analytic fit", res_fit)):
        r = r[np.isfinite(r)]
        if r.size >= 10:
            fits[name] = core_gaussian_fit(r)
    plot_residuals({"network": res_net[np.isfinite(res_net)],
                    "analytic fit": res_fit[np.isfinite(res_fit)]},
                   plots_dir / "residuals.png", fit=fits,
                   xlabel=f"{card.data.target}: predicted - true [cm]", title=card.name)
    plot_regression_scatter(true, pred, plots_dir / "scatter.png", label=card.name)
    return {"metrics": metrics, "baseline": baseline}


def evaluate_model(card, model, splits, out_dir, progress: bool = False) -> dict:
    """Evaluate a trained model on its test split; writes plots to ``out_dir/plots``."""
    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    if card.task == "anomaly":
        return evaluate_anomaly(card, model, splits, plots_dir, progress)
    if card.task == "generative":
        return evaluate_generative(card, model, splits, plots_dir, progress)
    if card.task == "classification":
        if card.data.input_format != "hits":
            return evaluate_offline_classification(card, model, splits, plots_dir, progress)
        return evaluate_classification(card, model, splits, plots_dir, progress)
    return evaluate_regression(card, model, splits, plots_dir, progress)


# ---------------------------------------------------------------------------------------------
# Offline models: jet images, event tables, pseudo-experiment histograms, anomaly search, GAN
# ---------------------------------------------------------------------------------------------


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


def _background_index(card) -> int:
    bkg = card.evaluation.background or card.data.classes[0]
    if bkg not in card.data.classes:
        raise ValueError(f"evaluation.background {bkg!r} is not one of data.classes "
                         f"{list(card.data.classes)}")
    return list(card.data.classes).index(bkg)


def _pair_score(probs: np.ndarray, k: int, b: int) -> np.ndarray:
    """Class k against class b from softmax outputs: p_k / (p_k + p_b)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        s = probs[:, k] / (probs[:, k] + probs[:, b])
    return np.nan_to_num(s, nan=0.5)


def baseline_observables(card, split) -> dict[str, np.ndarray]:
    """Single physics observables a standard analysis would cut on, per input format: jet width,
    hadronic fraction, mass and pT from the image pixels; each table feature; a histogram's
    mean pT and total count."""
    x = split.images()
    fmt = card.data.input_format
    if fmt == "jet_images":
        from .jetprep import image_observables

        imgs = x.astype(np.float64)
        obs = image_observables(imgs, split.context.get("pixel_size", 0.1))
        out = {f"jet {k}": np.asarray(v, np.float64) for k, v in obs.items()}
        if imgs.shape[1] == 2:
            tot = imgs.sum(axis=(1, 2, 3))
            out["hadronic fraction"] = np.where(tot > 0, imgs[:, 1].sum(axis=(1, 2)) /
                                                np.where(tot > 0, tot, 1), 0.0)
        return out
    if fmt == "table":
        return {name: x[:, i].astype(np.float64) for i, name in enumerate(card.data.features)}
    if fmt == "histograms":
        h = split.truth("counts").astype(np.float64)
        from .histograms import HistBinning

        edges = np.asarray(HistBinning().pt_edges, float)
        centres = 0.5 * (edges[1:] + edges[:-1])
        tot = h.sum(axis=(1, 2))
        mean_pt = (h.sum(axis=2) * centres[None, :h.shape[1]]).sum(1) / np.where(tot > 0, tot, 1)
        return {"histogram mean pT": mean_pt, "histogram total": tot}
    return {}


def best_baseline(card, splits, k: int, b: int) -> tuple[str, float]:
    """The single observable (and sign) separating class k from b best on the validation split."""
    val = splits["val"]
    sel = np.isin(val.target, (k, b))
    if not sel.any() or len(np.unique(val.target[sel])) < 2:
        val = splits["test"]
        sel = np.isin(val.target, (k, b))
    best = ("", 1.0, 0.5)
    for name, v in baseline_observables(card, val).items():
        v = v[sel]
        if not np.all(np.isfinite(v)):
            continue
        auc = roc_auc(val.target[sel] == k, v)
        sign = 1.0 if auc >= 0.5 else -1.0
        if max(auc, 1 - auc) > best[2]:
            best = (name, sign, max(auc, 1 - auc))
    return best[0], best[1]


def _anomaly_scores(model, card, x: np.ndarray) -> np.ndarray:
    import torch

    from .models import anomaly_score, to_input

    out = []
    with torch.no_grad():
        for s in range(0, len(x), EVAL_BATCH):
            out.append(anomaly_score(model, to_input(x[s:s + EVAL_BATCH], card)).double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def evaluate_offline_classification(card, model, splits, plots_dir,
                                    progress: bool = False) -> dict:
    """Each class against the background class: AUC, 1/eps_B at the signal-efficiency working
    point, efficiency at the fake rate; beside the best single observable (chosen on the
    validation split). Histogram models add the S/sqrt(B) scan, tables permutation importance
    and efficiency versus pT when a ``pt`` column is kept."""
    from .plots import plot_confusion, plot_roc, plot_score_distributions

    ev = card.evaluation
    test = splits["test"]
    x, y = test.images(), test.target
    probs = _softmax(predict_outputs(model, card, x))
    classes = list(card.data.classes)
    b = _background_index(card)
    obs_test = baseline_observables(card, test)
    per, base, curves = {}, {}, {}
    for k, name in enumerate(classes):
        if k == b:
            continue
        sel = (y == k) | (y == b)
        score = _pair_score(probs[sel], k, b)
        per[name] = working_point_metrics(y[sel] == k, score, ev.signal_eff, ev.fake_rate)
        fpr, tpr, _ = roc_curve(y[sel] == k, score)
        curves[f"network: {name}"] = (fpr, tpr, per[name]["auc"])
        obs, sign = best_baseline(card, splits, k, b)
        if obs:
            bscore = sign * obs_test[obs][sel]
            base[name] = {"observable": ("-" if sign < 0 else "") + obs,
                          **working_point_metrics(y[sel] == k, bscore, ev.signal_eff,
                                                  ev.fake_rate)}
            fpr, tpr, _ = roc_curve(y[sel] == k, bscore)
            curves[f"cut on {base[name]['observable']}: {name}"] = (fpr, tpr, base[name]["auc"])
    first = next(iter(per))
    metrics = {"accuracy": accuracy(y, probs.argmax(1)), "n_test": int(len(y)),
               **{k: per[first][k] for k in per[first]}, "per_class": per,
               "background": classes[b]}
    baseline = ({k: v for k, v in base[first].items()} | {"per_class": base}) if base else {}
    plot_roc(curves, plots_dir / "roc.png", title=f"{card.name} (test, {len(y)} events)")
    plot_confusion(confusion_matrix(y, probs.argmax(1), len(classes)), classes,
                   plots_dir / "confusion.png")
    plot_score_distributions({c: 1.0 - probs[y == k, b] for k, c in enumerate(classes)},
                             plots_dir / "scores.png", xlabel=f"1 - P({classes[b]})",
                             title=card.name)
    if card.data.input_format == "histograms":
        metrics.update(histogram_scan(card, model, splits, plots_dir))
        if card.data.hist.mode == "multiclass":
            metrics["tagging"] = multiclass_tagging(y, probs, classes)
    if card.data.input_format == "table":
        metrics["permutation_importance"] = permutation_importance(card, model, test, b,
                                                                   plots_dir)
        if "pt" in test.extra:
            metrics["eff_vs_pt"] = efficiency_vs_pt(card, test, probs, b, plots_dir)
    return {"metrics": metrics, "baseline": baseline}


def multiclass_tagging(y: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    """Fraction of histograms of each true class whose highest class probability is above 2/N
    and belongs to that class (the multi-class counting of the monojet study)."""
    n = len(classes)
    top = probs.argmax(1)
    confident = probs.max(1) > 2.0 / n
    return {c: float(np.mean((top[y == k] == k) & confident[y == k])) if np.any(y == k)
            else float("nan") for k, c in enumerate(classes)}


def histogram_scan(card, model, splits, plots_dir) -> dict:
    """AUC (SM vs SM + signal) versus S/sqrt(B) for several background sizes r, on histograms
    built from the test split's events only; equal AUC at equal S/sqrt(B) shows the
    invariance with B."""
    from .data import histogram_sets
    from .plots import plot_curves

    h = card.data.hist
    pools = splits["test"].context["pools"]
    n_sets = max(200, min(1000, len(splits["test"])))
    scan, series = {}, {}
    for r in h.scan_r:
        aucs = []
        for z in h.scan_s_over_sqrt_b:
            try:
                x, y, _ = histogram_sets(card, pools, r, z, n_sets, seed=7919 + r,
                                         shape=splits["test"].context["background_shape"])
            except Exception as err:  # noqa: BLE001 - too few test events for this r
                scan[f"r={r}"] = f"skipped: {err}"
                aucs = []
                break
            probs = _softmax(predict_outputs(model, card, x))
            is_sig = y > 0
            aucs.append(roc_auc(is_sig, 1.0 - probs[:, 0]))
        if aucs:
            scan[f"r={r}"] = dict(zip(map(str, h.scan_s_over_sqrt_b), aucs, strict=True))
            series[f"B = {r} events"] = (np.asarray(h.scan_s_over_sqrt_b), np.asarray(aucs))
    if series:
        plot_curves(series, plots_dir / "auc_vs_s_over_sqrt_b.png", "S / sqrt(B)",
                    "AUC (SM vs SM + signal)", title=f"{card.name}: trained at r = {h.r}, "
                    f"S/sqrt(B) = {h.s_over_sqrt_b:g}", hline=0.5)
    return {"auc_vs_s_over_sqrt_b": scan}


def permutation_importance(card, model, test, b: int, plots_dir, seed: int = 0) -> dict:
    """AUC loss when one feature column is shuffled across the test events (signal = every
    class other than the background)."""
    from .plots import plot_bars

    x = test.images()
    y = test.target != b

    def auc_of(inputs: np.ndarray) -> float:
        probs = _softmax(predict_outputs(model, card, inputs))
        return roc_auc(y, 1.0 - probs[:, b])

    ref = auc_of(x)
    rng = np.random.default_rng(seed)
    drops = {}
    for i, name in enumerate(card.data.features):
        xp = x.copy()
        xp[:, i] = xp[rng.permutation(len(xp)), i]
        drops[name] = ref - auc_of(xp)
    plot_bars(drops, plots_dir / "feature_importance.png", "AUC loss when the feature is "
              "permuted", title=f"{card.name} (test AUC {ref:.4f})")
    return drops


#: pT bin edges [GeV] of the efficiency-versus-pT study.
EFF_PT_EDGES = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0)


def pt_bin_centres(edges: tuple[float, ...] = EFF_PT_EDGES) -> np.ndarray:
    """Centres of the efficiency-versus-pT bins."""
    return 0.5 * (np.asarray(edges[:-1]) + np.asarray(edges[1:]))


def efficiency_vs_pt(card, test, probs: np.ndarray, b: int, plots_dir,
                     edges: tuple[float, ...] = EFF_PT_EDGES) -> dict:
    """Signal efficiency at the card's fake rate in pT bins (cut set per bin on background):
    ``{"lo-hi GeV": efficiency}``, NaN where a bin has too few events."""
    from .plots import plot_curves

    pt = test.truth("pt")
    y = test.target
    score = 1.0 - probs[:, b]
    out = {}
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (pt >= lo) & (pt < hi)
        sig, bkg = sel & (y != b), sel & (y == b)
        eff = float("nan")
        if sig.sum() >= 5 and bkg.sum() >= 20:
            cut = cut_at_fake_rate(score[bkg], card.evaluation.fake_rate)
            eff = float(np.mean(score[sig] >= cut))
        out[f"{lo:g}-{hi:g} GeV"] = eff
    plot_curves({card.name: (pt_bin_centres(edges), np.asarray(list(out.values())))},
                plots_dir / "eff_vs_pt.png",
                "pT [GeV]", f"efficiency at {100 * card.evaluation.fake_rate:g} % fake rate",
                title=card.name)
    return out


def evaluate_anomaly(card, model, splits, plots_dir, progress: bool = False) -> dict:
    """Autoencoder anomaly search: AUC of the reconstruction error for each anomalous class
    against the background, and the mass sculpting of the background (1/JSD between the
    passing and failing mass distributions at the working point, distance correlation);
    beside the jet mass itself used as the anomaly score."""
    from .decorrelate import distance_correlation_numpy, inverse_jsd_at_background_efficiency
    from .plots import plot_roc, plot_score_distributions, plot_sculpting

    ev = card.evaluation
    test = splits["test"]
    x, y = test.images(), test.target
    classes = list(card.data.classes)
    b = _background_index(card)
    score = _anomaly_scores(model, card, x)
    var = card.training.decorrelate
    mass = test.truth(var).astype(np.float64)
    obs = baseline_observables(card, test)
    base_score = obs.get("jet mass", mass)
    per, base, curves = {}, {}, {}
    for k, name in enumerate(classes):
        if k == b:
            continue
        sel = (y == k) | (y == b)
        per[name] = working_point_metrics(y[sel] == k, score[sel], ev.signal_eff, ev.fake_rate)
        base[name] = working_point_metrics(y[sel] == k, base_score[sel], ev.signal_eff,
                                           ev.fake_rate)
        fpr, tpr, _ = roc_curve(y[sel] == k, score[sel])
        curves[f"autoencoder: {name}"] = (fpr, tpr, per[name]["auc"])
        fpr, tpr, _ = roc_curve(y[sel] == k, base_score[sel])
        curves[f"jet mass: {name}"] = (fpr, tpr, base[name]["auc"])
    bkg = y == b
    rng = np.random.default_rng(0)
    sub = rng.choice(np.flatnonzero(bkg), size=min(2000, int(bkg.sum())), replace=False)
    sculpt = {
        "inv_jsd_at_50pct_bkg_eff": inverse_jsd_at_background_efficiency(score[bkg], mass[bkg],
                                                                         0.5),
        "dcor2_score_mass_bkg": distance_correlation_numpy(score[sub], mass[sub]),
    }
    base_sculpt = {
        "inv_jsd_at_50pct_bkg_eff": inverse_jsd_at_background_efficiency(
            base_score[bkg], mass[bkg], 0.5),
        "dcor2_score_mass_bkg": distance_correlation_numpy(base_score[sub], mass[sub]),
    }
    metrics = {"n_test": int(len(y)), "auc": float(np.mean([v["auc"] for v in per.values()])),
               "per_class": per, **sculpt, "background": classes[b], "decorrelate": var,
               "disco_lambda": card.training.disco_lambda,
               "adversary_lambda": card.training.adversary_lambda}
    baseline = {"observable": "jet mass (pixels)",
                "auc": float(np.mean([v["auc"] for v in base.values()])), "per_class": base,
                **base_sculpt}
    plot_roc(curves, plots_dir / "roc.png", title=f"{card.name} (test)")
    plot_score_distributions({c: score[y == k] for k, c in enumerate(classes)},
                             plots_dir / "scores.png", "reconstruction error (anomaly score)",
                             title=card.name)
    cut = float(np.quantile(score[bkg], 0.5))
    plot_sculpting(mass[bkg], score[bkg], cut, plots_dir / "sculpting.png",
                   title=f"{card.name}: {classes[b]} at 50 % background efficiency "
                         f"(1/JSD = {sculpt['inv_jsd_at_50pct_bkg_eff']:.3g})")
    return {"metrics": metrics, "baseline": baseline}


def evaluate_generative(card, generator, splits, plots_dir, progress: bool = False) -> dict:
    """WGAN-GP validation: generated vs real test images on jet observables from pixels and on
    pixel intensities (KS statistic, Wasserstein distance); the baseline is the same comparison
    between two independent halves of the real images (the statistical floor)."""
    from .gan import compare_samples, plot_gan_validation, sample
    from .jetprep import image_observables

    test = splits["test"]
    real = test.images().astype(np.float32)
    if real.ndim == 3:
        real = real[:, None]
    pixel = test.context.get("pixel_size", 0.1)

    def observables(images: np.ndarray) -> dict[str, np.ndarray]:
        return image_observables(images, pixel)

    fake = sample(generator, len(real), seed=card.evaluation.seed)
    half = len(real) // 2
    metrics = compare_samples(real, fake, observables)
    baseline = compare_samples(real[:half], real[half:2 * half], observables)
    plots = plot_gan_validation(real, fake, observables, plots_dir)
    return {"metrics": {"n_test": int(len(real)), **metrics}, "baseline": baseline,
            "plots": [str(p) for p in plots]}
