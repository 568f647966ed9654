"""Per-prediction uncertainty of Bayesian models (``architecture.bayesian``), by sampling the
weight posterior ``architecture.samples`` times on the test events.

- classification: per event the mean and the spread (standard deviation over weight samples)
  of the score 1 - P(background); the spread is the statistical (epistemic) uncertainty and
  shrinks with the training-set size (the card's ``data.train_events`` variants);
- regression: per event the predictive distribution, the average over weight samples of the
  output Gaussian (or Gaussian mixture, ``architecture.mixture``); its mean, its standard
  deviation (aleatoric and epistemic) and the epistemic part alone (spread of the sampled
  means); calibration from the PIT (the predictive CDF at the true value) and the pulls
  Phi^-1(PIT) (= (true - mean) / sigma for one Gaussian): their standard deviation (pull width,
  1 when calibrated), a robust width (1.4826 x median absolute deviation), the coverage of the
  central 68 % and 95 % intervals, and the width of the plain Gaussian pulls
  (true - mean) / std for comparison.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import norm

from trigkit.core.plots import plot_curves, plot_score_distributions, plt, save_figure
from trigkit.learn.bayes import MIN_SIGMA, sample_outputs
from trigkit.learn.metrics import roc_auc
from trigkit.learn.models import to_input

from .common import softmax

#: Predicted-width quantile bins of the calibration plot.
CALIBRATION_BINS = 8


def bayesian_study(card, model, splits, plots_dir: Path) -> dict:
    """The uncertainty metrics of a Bayesian model on its test split (see module docstring)."""
    test = splits["test"]
    x = test.images()
    outs = sample_outputs(model, x, card.architecture.samples, card.evaluation.seed,
                          lambda chunk: to_input(chunk, card))
    if card.task == "classification":
        return (classification_spread(card, outs, test.target, plots_dir)
                | {"train_events": int(len(splits["train"]))})
    return regression_calibration(card, outs, test.target.astype(np.float64), plots_dir)


def classification_spread(card, outs: np.ndarray, y: np.ndarray, plots_dir: Path) -> dict:
    """Mean and spread of the score 1 - P(background) over weight samples, per event."""
    classes = list(card.data.classes)
    b = classes.index(card.evaluation.background or classes[0])
    score = np.stack([1.0 - softmax(o)[:, b] for o in outs])  # (samples, events)
    mean, spread = score.mean(0), score.std(0)
    per_class = {c: float(np.mean(spread[y == k])) for k, c in enumerate(classes)
                 if np.any(y == k)}
    plot_score_distributions({c: spread[y == k] for k, c in enumerate(classes)},
                             plots_dir / "score_spread.png",
                             f"spread of 1 - P({classes[b]}) over weight samples",
                             title=f"{card.name}: {len(score)} weight samples")
    return {"samples": int(len(score)), "mean_spread": float(spread.mean()),
            "median_spread": float(np.median(spread)),
            "mean_spread_per_class": per_class,
            "auc_of_mean_score": roc_auc(y != b, mean) if len(np.unique(y != b)) == 2
            else float("nan")}


def predictive(card, outs: np.ndarray) -> dict[str, np.ndarray]:
    """The sampled predictive mixtures in target units from outputs (samples, events, 3K):
    component weights ``w``, means ``mu`` and widths ``sigma``, each (samples, events, K)."""
    k, scale = card.architecture.mixture, card.data.target_scale
    logits = outs[..., :k]
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    sigma = (np.logaddexp(0.0, outs[..., 2 * k:3 * k]) + MIN_SIGMA) * scale  # as in training
    return {"w": w, "mu": outs[..., k:2 * k] * scale, "sigma": sigma}


def predictive_summary(pred: dict[str, np.ndarray], y: np.ndarray) -> dict[str, np.ndarray]:
    """Per event: the predictive mean and standard deviation (the average of the sampled
    mixtures), the epistemic part (spread of the sampled means) and the PIT, the predictive
    CDF at the true value (uniform when calibrated)."""
    w, mu, sigma = pred["w"], pred["mu"], pred["sigma"]
    sample_mean = (w * mu).sum(-1)
    mean = sample_mean.mean(0)
    second = (w * (sigma**2 + mu**2)).sum(-1).mean(0)
    pit = (w * norm.cdf((y[None, :, None] - mu) / sigma)).sum(-1).mean(0)
    return {"mean": mean, "std": np.sqrt(np.maximum(second - mean**2, 0.0)),
            "epistemic": sample_mean.std(0), "pit": pit}


def regression_calibration(card, outs: np.ndarray, y: np.ndarray, plots_dir: Path) -> dict:
    """Pull width and interval coverage of the predictive distribution on the test events.

    Pulls are Phi^-1(PIT) (for a single Gaussian: (true - mean) / sigma); the central 68 %
    (95 %) interval covers the truth when |PIT - 0.5| <= 0.3413 (0.475)."""
    summ = predictive_summary(predictive(card, outs), y)
    pull = norm.ppf(np.clip(summ["pit"], 1e-7, 1 - 1e-7))
    mad = np.median(np.abs(pull - np.median(pull)))
    gauss = (y - summ["mean"]) / summ["std"]
    metrics = {
        "samples": int(len(outs)), "n_test": int(len(y)),
        "mixture": card.architecture.mixture,
        "pull_mean": float(pull.mean()), "pull_width": float(pull.std()),
        "pull_width_robust": float(1.4826 * mad),
        "coverage_68": float(np.mean(np.abs(summ["pit"] - 0.5) <= norm.cdf(1.0) - 0.5)),
        "coverage_95": float(np.mean(np.abs(summ["pit"] - 0.5) <= 0.475)),
        "gaussian_pull_width": float(gauss.std()),
        "mean_sigma": float(summ["std"].mean()),
        "mean_sigma_epistemic": float(summ["epistemic"].mean()),
        "rms_residual": float(np.sqrt(np.mean((y - summ["mean"]) ** 2))),
    }
    metrics["calibration"] = _calibration_bins(y - summ["mean"], summ["std"], summ["pit"])
    _plot_pulls(pull, metrics, plots_dir / "pulls.png", card.name)
    cal = metrics["calibration"]
    pred = np.array([v["predicted_sigma"] for v in cal.values()])
    obs = np.array([v["observed_rms"] for v in cal.values()])
    plot_curves({"network": (pred, obs), "perfect calibration": (pred, pred)},
                plots_dir / "calibration.png", f"predicted sigma [{card.data.target}]",
                "observed RMS of (true - mean)", title=f"{card.name}: calibration in "
                f"{len(cal)} bins of predicted sigma")
    return metrics


def _calibration_bins(residual: np.ndarray, sigma: np.ndarray, pit: np.ndarray) -> dict:
    """Observed residual RMS and 68 % coverage in quantile bins of the predicted sigma."""
    edges = np.quantile(sigma, np.linspace(0, 1, CALIBRATION_BINS + 1))
    idx = np.clip(np.searchsorted(edges[1:-1], sigma, side="right"), 0, CALIBRATION_BINS - 1)
    out = {}
    for k in range(CALIBRATION_BINS):
        sel = idx == k
        if sel.sum() < 10:
            continue
        out[f"bin {k + 1}"] = {
            "predicted_sigma": float(np.sqrt(np.mean(sigma[sel] ** 2))),
            "observed_rms": float(np.sqrt(np.mean(residual[sel] ** 2))),
            "coverage_68": float(np.mean(np.abs(pit[sel] - 0.5) <= norm.cdf(1.0) - 0.5)),
            "events": int(sel.sum())}
    return out


def _plot_pulls(pull: np.ndarray, metrics: dict, path: Path, name: str) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 4.6))
    bins = np.linspace(-5, 5, 81)
    ax.hist(np.clip(pull, -5, 5), bins=bins, density=True, histtype="step", lw=1.5,
            label=f"pulls (width {metrics['pull_width']:.3f}, 68 % coverage "
                  f"{metrics['coverage_68']:.3f})")
    grid = np.linspace(-5, 5, 400)
    ax.plot(grid, norm.pdf(grid), "k:", label="unit Gaussian")
    ax.set_xlabel("pull Phi^-1(PIT)  (one Gaussian: (true - mean) / sigma)")
    ax.set_ylabel("density")
    ax.set_title(f"{name}: pulls on the test events", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_spread_vs_size(sizes: dict[str, int], spreads: dict[str, float], path: Path,
                        name: str) -> Path:
    """Mean per-event score spread versus the number of training events."""
    keys = sorted(sizes, key=lambda k: sizes[k])
    x = np.array([sizes[k] for k in keys], float)
    y = np.array([spreads[k] for k in keys], float)
    ref = y[0] * np.sqrt(x[0] / x)
    return plot_curves({"mean spread of the score": (x, y), "1/sqrt(N) from the smallest": (
        x, ref)}, path, "training events", "mean per-event spread of the score",
        title=f"{name}: statistical uncertainty versus training-set size", log_x=True)
