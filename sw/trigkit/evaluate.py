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
    if card.task == "classification":
        return evaluate_classification(card, model, splits, plots_dir, progress)
    return evaluate_regression(card, model, splits, plots_dir, progress)
