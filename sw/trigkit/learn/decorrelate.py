"""Mass decorrelation of an anomaly score: DisCo penalty, mass adversary, sculpting metrics.

Two ways to keep a cut on the autoencoder's anomaly score from sculpting the background jet-mass
distribution, both used by :class:`trigkit.train.Trainer` for ``task: anomaly``:

* DisCo (Kasieczka & Shih, arXiv 2001.05310): add ``lambda * dCor^2(score, mass)`` on background
  batches to the loss (:func:`distance_correlation`).
* An adversary (Louppe, Kagan & Cranmer, "Learning to pivot", arXiv 1611.01046): a small network
  predicts the quantile bin of the mass from the score (:class:`MassAdversary`). Each batch,
  the trainer (1) makes one adversary step minimising :func:`adversary_loss` on *detached*
  scores, then (2) makes one model step with ``loss = reconstruction - lambda * adversary_loss``
  so the model learns scores from which the mass cannot be predicted.

The sculpting metric is 1/JSD between the background mass distributions that pass and fail a cut
at a fixed background efficiency (:func:`inverse_jsd_at_background_efficiency`; higher = less
sculpting).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trigkit.core.errors import TrigkitError


def _as_1d(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1:
        raise TrigkitError(f"distance_correlation: {name} must be a 1-D batch (N,) or (N, 1); "
                           f"got shape {tuple(t.shape)}")
    return t


def _double_centred(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The weighted, double-centred distance matrix A_ij = a_ij - a_i. - a_.j + a_.. ."""
    a = (v[:, None] - v[None, :]).abs()
    row = (a * w).mean(dim=1)  # weighted mean over j (weights have mean 1)
    return a - row[None, :] - row[:, None] + (row * w).mean()


def distance_correlation(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None,
                         power: int = 1) -> torch.Tensor:
    """Squared distance correlation dCor^2(x, y) of two 1-D batches, differentiable (DisCo).

    Follows the DisCo reference implementation: double-centred distance matrices A, B;
    dCov^2 = <A B>, dCor^2 = dCov^2 / sqrt(dVar^2(x) dVar^2(y)), where <.> is the mean over
    event pairs, weighted by ``weights`` (normalised here to mean 1; ``None`` = all 1).
    ``power=1`` (default) returns **dCor^2**, the DisCo penalty, in [0, 1]: 0 for independent
    variables (up to O(1/N) finite-sample bias), 1 for y = a x + b. ``power=p`` returns
    (dCor^2)^p. A constant batch gives 0. Memory is O(N^2): use batches of up to a few thousand.
    """
    x, y = _as_1d(torch.as_tensor(x), "x"), _as_1d(torch.as_tensor(y), "y")
    if len(x) != len(y):
        raise TrigkitError(f"distance_correlation: x and y have different lengths "
                           f"({len(x)} and {len(y)}); pass one value of each per event")
    if len(x) < 2:
        raise TrigkitError("distance_correlation needs at least 2 events per batch")
    if power < 1:
        raise TrigkitError(f"distance_correlation: power must be >= 1, got {power}")
    dtype = torch.promote_types(x.dtype, y.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    x, y = x.to(dtype), y.to(dtype)
    if weights is None:
        w = torch.ones_like(x)
    else:
        w = _as_1d(torch.as_tensor(weights), "weights").to(dtype)
        if len(w) != len(x):
            raise TrigkitError(f"distance_correlation: {len(w)} weights for {len(x)} events")
        w = w / w.mean()
    a, b = _double_centred(x, w), _double_centred(y, w)

    def wmean(m: torch.Tensor) -> torch.Tensor:
        return ((m * w).mean(dim=1) * w).mean()

    dcov2, dvar2_x, dvar2_y = wmean(a * b), wmean(a * a), wmean(b * b)
    denom = torch.sqrt(dvar2_x * dvar2_y)
    if not bool(denom > 0):
        return dcov2 * 0.0  # a constant variable is independent of everything
    return (dcov2 / denom) ** power


def distance_correlation_numpy(x: np.ndarray, y: np.ndarray) -> float:
    """dCor^2(x, y) from Székely's definition in float64 (an independent O(N^2) check of
    :func:`distance_correlation`; same V-statistic, same value)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape or len(x) < 2:
        raise TrigkitError(f"distance_correlation_numpy needs two arrays of the same length >= 2; "
                           f"got {len(x)} and {len(y)}")

    def centred(v: np.ndarray) -> np.ndarray:
        d = np.abs(np.subtract.outer(v, v))
        return d - d.mean(axis=0, keepdims=True) - d.mean(axis=1, keepdims=True) + d.mean()

    a, b = centred(x), centred(y)
    dcov2 = np.mean(a * b)
    dvar2 = np.mean(a * a) * np.mean(b * b)
    return float(dcov2 / np.sqrt(dvar2)) if dvar2 > 0 else 0.0


class MassAdversary(nn.Module):
    """MLP (N, 1) anomaly score -> (N, n_bins) logits of the jet-mass quantile bin."""

    def __init__(self, n_bins: int = 10, hidden: int = 32, layers: int = 2):
        super().__init__()
        if n_bins < 2:
            raise TrigkitError(f"MassAdversary needs n_bins >= 2, got {n_bins}")
        mods: list[nn.Module] = []
        n_in = 1
        for _ in range(layers):
            mods += [nn.Linear(n_in, hidden), nn.ReLU()]
            n_in = hidden
        mods.append(nn.Linear(n_in, n_bins))
        self.net = nn.Sequential(*mods)
        self.n_bins = n_bins

    def forward(self, score: torch.Tensor) -> torch.Tensor:
        if score.ndim == 1:
            score = score[:, None]
        return self.net(score)


def adversary_loss(adversary: nn.Module, score: torch.Tensor,
                   mass_bin: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Cross entropy of the adversary's mass-bin prediction from ``score`` ((N, 1) or (N,))."""
    target = torch.as_tensor(mass_bin, dtype=torch.long)
    return nn.functional.cross_entropy(adversary(score), target)


def _bin_index(mass: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges[1:-1], mass, side="right"), 0, len(edges) - 2)


def mass_bins(mass: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantile bin edges (n_bins + 1) of the training-background ``mass`` and each event's bin
    index in [0, n_bins - 1] (values outside the edges go to the first/last bin)."""
    mass = np.asarray(mass, dtype=np.float64).ravel()
    if n_bins < 2:
        raise TrigkitError(f"mass_bins needs n_bins >= 2, got {n_bins}")
    if len(mass) < n_bins:
        raise TrigkitError(f"mass_bins: {len(mass)} events cannot fill {n_bins} quantile bins; "
                           "use fewer bins (training.adversary_bins) or more training events")
    bad = int((~np.isfinite(mass)).sum())
    if bad:
        raise TrigkitError(f"mass_bins: {bad} of {len(mass)} mass values are not finite; "
                           "decorrelate against a variable defined for every background event")
    edges = np.quantile(mass, np.linspace(0.0, 1.0, n_bins + 1))
    return edges, _bin_index(mass, edges)


def jensen_shannon_divergence(p_hist: np.ndarray, q_hist: np.ndarray) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two histograms over the same bins;
    each is normalised to unit sum, empty bins contribute 0."""
    p = np.asarray(p_hist, dtype=np.float64).ravel()
    q = np.asarray(q_hist, dtype=np.float64).ravel()
    if p.shape != q.shape:
        raise TrigkitError(f"jensen_shannon_divergence: histograms have {len(p)} and {len(q)} "
                           "bins; histogram both with the same bin edges")
    if (p < 0).any() or (q < 0).any() or not (np.isfinite(p).all() and np.isfinite(q).all()):
        raise TrigkitError("jensen_shannon_divergence: histograms must be finite and >= 0")
    if p.sum() <= 0 or q.sum() <= 0:
        raise TrigkitError("jensen_shannon_divergence: a histogram is empty (sum 0)")
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))


def inverse_jsd_at_background_efficiency(score_bkg: np.ndarray, mass_bkg: np.ndarray,
                                         bkg_eff: float = 0.5,
                                         bins: int | np.ndarray = 50) -> float:
    """1/JSD between the background mass histograms passing (score >= threshold) and failing a
    cut that keeps ``bkg_eff`` of the background (higher = less mass sculpting; inf when the two
    histograms are identical). ``bins``: a number of equal bins over the mass range, or edges.
    Statistical fluctuations keep JSD > 0 for a finite sample, so 1/JSD of a perfectly
    decorrelated score is finite and grows with the number of events (compare at equal N)."""
    score = np.asarray(score_bkg, dtype=np.float64).ravel()
    mass = np.asarray(mass_bkg, dtype=np.float64).ravel()
    if score.shape != mass.shape:
        raise TrigkitError(f"inverse_jsd: {len(score)} scores for {len(mass)} masses; pass one "
                           "of each per background event")
    if not 0.0 < bkg_eff < 1.0:
        raise TrigkitError(f"inverse_jsd: bkg_eff must be in (0, 1), got {bkg_eff}")
    ok = np.isfinite(score) & np.isfinite(mass)
    score, mass = score[ok], mass[ok]
    if len(score) < 4:
        raise TrigkitError(f"inverse_jsd: only {len(score)} background events with finite "
                           "score and mass; need more")
    threshold = np.quantile(score, 1.0 - bkg_eff)
    passed = score >= threshold
    if passed.all() or not passed.any():
        raise TrigkitError(f"inverse_jsd: no cut on the score keeps {bkg_eff:g} of the "
                           "background (the score is constant); check the model's outputs")
    if np.isscalar(bins):
        lo, hi = float(mass.min()), float(mass.max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, int(bins) + 1)
    else:
        edges = np.asarray(bins, dtype=np.float64)
    h_pass, _ = np.histogram(mass[passed], bins=edges)
    h_fail, _ = np.histogram(mass[~passed], bins=edges)
    if h_pass.sum() == 0 or h_fail.sum() == 0:
        raise TrigkitError("inverse_jsd: the passing or failing events fall outside the mass bins; "
                           "give bin edges that cover the background mass range")
    jsd = jensen_shannon_divergence(h_pass, h_fail)
    return float("inf") if jsd == 0 else 1.0 / jsd
