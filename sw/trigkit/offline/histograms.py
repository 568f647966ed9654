"""Pseudo-experiment histograms for the monojet study: 2-D (leading-jet pT x eta) histograms of
many events each, background only or background + signal at a given S/sqrt(B).

Conventions (see sw/docs/tabular.md):

- Binning: pT on axis 0, eta on axis 1. Events below the first pT edge are counted in the first
  pT bin and events above the last edge in the last one (under- and overflow), so no event is
  lost in pT. Events outside ``[eta_edges[0], eta_edges[-1]]`` (both ends included) are
  dropped: a histogram's sum is exactly the number of events inside the eta range.
- Pseudo-experiments: pools are first reduced to the events inside the eta range. A signal set
  holds ``r`` background events plus ``n_s = floor(s_over_sqrt_b * sqrt(r) + 0.5)`` signal
  events. With ``match_totals`` (the default) a background-only set holds ``r + n_s``
  background events, so every histogram has the same number of entries and only the *shape*
  tells the classes apart (otherwise the total alone would separate them perfectly). Events are
  drawn without replacement within a set; different sets reuse the pools.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trigkit.core.config import from_dict, to_dict
from trigkit.core.errors import ConfigError, TrigkitError


def _default_pt_edges() -> tuple[float, ...]:
    return tuple(round(float(x), 3) for x in np.geomspace(200.0, 1200.0, 21))


def _default_eta_edges() -> tuple[float, ...]:
    return tuple(round(float(x), 3) for x in np.linspace(-2.5, 2.5, 11))


@dataclass(frozen=True)
class HistBinning:
    """Bin edges of the (pT, eta) histograms.

    Attributes:
        pt_edges: increasing pT edges in GeV (default 20 log-spaced bins, 200-1200 GeV; under-
            and overflow go to the first and last bin).
        eta_edges: increasing eta edges (default 10 bins over [-2.5, 2.5]; events outside are
            dropped).
    """

    pt_edges: tuple[float, ...] = field(default_factory=_default_pt_edges)
    eta_edges: tuple[float, ...] = field(default_factory=_default_eta_edges)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("pt_edges", "eta_edges"):
            edges = np.asarray(getattr(self, name), dtype=np.float64)
            if edges.ndim != 1 or len(edges) < 2:
                raise ConfigError(f"histogram {name} needs at least 2 edges (1 bin)")
            if not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
                raise ConfigError(f"histogram {name} must be finite and strictly increasing")

    @property
    def shape(self) -> tuple[int, int]:
        """(number of pT bins, number of eta bins)."""
        return (len(self.pt_edges) - 1, len(self.eta_edges) - 1)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistBinning:
        return from_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def _as_1d(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise TrigkitError(f"{name} must be a 1-D array of events, got shape {arr.shape}")
    return arr


def bin_index(pt: Any, eta: Any, binning: HistBinning | None = None) -> np.ndarray:
    """Flat bin index ``i_pt * n_eta + i_eta`` of every event; -1 outside the eta range."""
    b = binning or HistBinning()
    pt, eta = _as_1d(pt, "pt"), _as_1d(eta, "eta")
    if len(pt) != len(eta):
        raise TrigkitError(f"pt and eta have different lengths ({len(pt)} and {len(eta)})")
    for name, arr in (("pt", pt), ("eta", eta)):
        nan = np.flatnonzero(np.isnan(arr))
        if len(nan):
            raise TrigkitError(
                f"{name} has {len(nan)} NaN value(s), first at event {nan[0]}; remove those "
                "events before histogramming"
            )
    n_pt, n_eta = b.shape
    pe = np.asarray(b.pt_edges, dtype=np.float64)
    ee = np.asarray(b.eta_edges, dtype=np.float64)
    i_pt = np.clip(np.searchsorted(pe, pt, side="right") - 1, 0, n_pt - 1)
    i_eta = np.clip(np.searchsorted(ee, eta, side="right") - 1, 0, n_eta - 1)
    inside = (eta >= ee[0]) & (eta <= ee[-1])
    return np.where(inside, i_pt * n_eta + i_eta, -1)


def histogram_events(pt: Any, eta: Any, binning: HistBinning | None = None) -> np.ndarray:
    """One (n_pt, n_eta) int64 histogram of counts (pT under/overflow kept in the edge bins,
    events outside the eta range dropped: the sum is the number of events inside it)."""
    b = binning or HistBinning()
    idx = bin_index(pt, eta, b)
    counts = np.bincount(idx[idx >= 0], minlength=b.shape[0] * b.shape[1])
    return counts.astype(np.int64).reshape(b.shape)


def n_signal_events(r: int, s_over_sqrt_b: float) -> int:
    """Signal events of a signal set: ``floor(s_over_sqrt_b * sqrt(r) + 0.5)``."""
    return int(math.floor(s_over_sqrt_b * math.sqrt(r) + 0.5))


def _pool(events: Any, name: str, binning: HistBinning) -> np.ndarray:
    """Flat bin indices of a pool's events inside the eta range."""
    if not isinstance(events, dict) or "pt" not in events or "eta" not in events:
        have = ", ".join(map(str, events)) if isinstance(events, dict) else type(events).__name__
        raise TrigkitError(f"{name} pool must be a dict with 'pt' and 'eta' arrays; got {have}")
    idx = bin_index(events["pt"], events["eta"], binning)
    return idx[idx >= 0]


def _check_args(r: int, s_over_sqrt_b: float, n_sets: int, what: str = "n_sets") -> None:
    if isinstance(r, bool) or not isinstance(r, int | np.integer) or r < 1:
        raise TrigkitError(f"r (background events per histogram) must be an integer >= 1, "
                           f"got {r!r}")
    if not math.isfinite(s_over_sqrt_b) or s_over_sqrt_b < 0:
        raise TrigkitError(f"s_over_sqrt_b must be finite and >= 0, got {s_over_sqrt_b!r}")
    if isinstance(n_sets, bool) or not isinstance(n_sets, int | np.integer) or n_sets < 1:
        raise TrigkitError(f"{what} must be an integer >= 1, got {n_sets!r}")


def _need(pool: np.ndarray, k: int, name: str, r: int, n_s: int) -> None:
    if len(pool) < k:
        raise TrigkitError(
            f"{name} pool has {len(pool)} events inside the eta range but each histogram needs "
            f"{k} distinct ones (r = {r}, n_s = {n_s}); generate more events or lower r"
        )


def _fill(parts: list[tuple[np.ndarray, np.ndarray]], n_sets: int, binning: HistBinning,
          rng: np.random.Generator) -> np.ndarray:
    """Histograms of n_sets sets; parts: (pool bin indices, events drawn per set) per pool."""
    n_bins = binning.shape[0] * binning.shape[1]
    if n_sets == 0:
        return np.zeros((0, *binning.shape), np.float32)
    flat = []
    for pool, k in parts:
        if k == 0:
            continue
        picks = np.stack([rng.choice(len(pool), size=k, replace=False) for _ in range(n_sets)])
        flat.append((pool[picks] + n_bins * np.arange(n_sets)[:, None]).ravel())
    idx = np.concatenate(flat) if flat else np.zeros(0, np.int64)
    counts = np.bincount(idx, minlength=n_sets * n_bins)
    return counts.reshape(n_sets, *binning.shape).astype(np.float32)


def pseudo_experiments(
    background: dict[str, np.ndarray],
    signal: dict[str, np.ndarray],
    r: int,
    s_over_sqrt_b: float,
    n_sets: int,
    seed: int,
    binning: HistBinning | None = None,
    signal_fraction_of_sets: float = 0.5,
    match_totals: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Background-only (label 0) and background + signal (label 1) histograms.

    ``background`` and ``signal`` are pools ``{"pt": ..., "eta": ...}``. A signal set has ``r``
    background plus ``n_s = n_signal_events(r, s_over_sqrt_b)`` signal events; a background-only
    set has ``r + n_s`` background events with ``match_totals`` (else ``r``). The sets come in
    random order; returns (histograms (n_sets, n_pt, n_eta) float32, labels (n_sets,) int64).
    """
    b = binning or HistBinning()
    _check_args(r, s_over_sqrt_b, n_sets)
    if not 0.0 <= signal_fraction_of_sets <= 1.0:
        raise TrigkitError(f"signal_fraction_of_sets must be in [0, 1], got "
                           f"{signal_fraction_of_sets!r}")
    rng = np.random.default_rng(seed)
    bkg, sig = _pool(background, "background", b), _pool(signal, "signal", b)
    n_s = n_signal_events(r, s_over_sqrt_b)
    n_sig_sets = int(math.floor(n_sets * signal_fraction_of_sets + 0.5))
    n_bkg_sets = n_sets - n_sig_sets
    r_bkg_only = r + n_s if match_totals else r
    if n_bkg_sets:
        _need(bkg, r_bkg_only, "background", r, n_s)
    if n_sig_sets:
        _need(bkg, r, "background", r, n_s)
        _need(sig, n_s, "signal", r, n_s)
    h0 = _fill([(bkg, r_bkg_only)], n_bkg_sets, b, rng)
    h1 = _fill([(bkg, r), (sig, n_s)], n_sig_sets, b, rng)
    x = np.concatenate([h0, h1])
    y = np.concatenate([np.zeros(n_bkg_sets, np.int64), np.ones(n_sig_sets, np.int64)])
    order = rng.permutation(n_sets)
    return x[order], y[order]


def pseudo_experiments_multiclass(
    background: dict[str, np.ndarray],
    signals: dict[str, dict[str, np.ndarray]],
    r: int,
    s_over_sqrt_b: float,
    n_sets_per_class: int,
    seed: int,
    binning: HistBinning | None = None,
    match_totals: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Histograms of SM only (label 0) and SM + model k (label k, k-th entry of ``signals``),
    ``n_sets_per_class`` each, in random order; set contents as in :func:`pseudo_experiments`."""
    b = binning or HistBinning()
    _check_args(r, s_over_sqrt_b, n_sets_per_class, "n_sets_per_class")
    if not signals:
        raise TrigkitError("pseudo_experiments_multiclass needs at least one signal pool")
    rng = np.random.default_rng(seed)
    bkg = _pool(background, "background", b)
    n_s = n_signal_events(r, s_over_sqrt_b)
    _need(bkg, r + n_s if match_totals else r, "background", r, n_s)
    hists = [_fill([(bkg, r + n_s if match_totals else r)], n_sets_per_class, b, rng)]
    for name, events in signals.items():
        pool = _pool(events, f"signal {name!r}", b)
        _need(pool, n_s, f"signal {name!r}", r, n_s)
        hists.append(_fill([(bkg, r), (pool, n_s)], n_sets_per_class, b, rng))
    x = np.concatenate(hists)
    y = np.repeat(np.arange(len(hists), dtype=np.int64), n_sets_per_class)
    order = rng.permutation(len(y))
    return x[order], y[order]


def normalise_histograms(h: np.ndarray, r: int | None = None) -> np.ndarray:
    """Scale histograms for a network: divided by ``r`` when given (a bin's content becomes its
    share of the background size; sets of r + n_s events sum to 1 + n_s / r), else each
    divided by its own sum (unit sum; empty histograms stay zero). Returns float32."""
    x = np.asarray(h, dtype=np.float64)
    if r is not None:
        if r <= 0:
            raise TrigkitError(f"normalise_histograms: r must be > 0, got {r!r}")
        return (x / r).astype(np.float32)
    axes = tuple(range(1, x.ndim)) if x.ndim > 2 else None
    tot = x.sum(axis=axes, keepdims=True) if axes else x.sum()
    return np.divide(x, tot, out=np.zeros_like(x), where=tot > 0).astype(np.float32)


def background_shape(background: dict[str, np.ndarray],
                     binning: HistBinning | None = None) -> np.ndarray:
    """Bin probabilities (n_pt, n_eta) of a background pool (the expected shape, unit sum)."""
    b = binning or HistBinning()
    h = histogram_events(background["pt"], background["eta"], b).astype(np.float64)
    if h.sum() <= 0:
        raise TrigkitError("background pool has no events inside the eta range; cannot "
                           "build its expected shape")
    return h / h.sum()


def poisson_significance(h: np.ndarray, shape: np.ndarray, min_expected: float = 1.0
                         ) -> np.ndarray:
    """Per-bin deviation from the background expectation in Poisson standard deviations,
    ``(n - mu) / sqrt(mu)`` with ``mu = N * shape`` for a histogram of N entries (``mu`` floored
    at ``min_expected`` so empty tails stay finite). At fixed S/sqrt(B) the inputs have the same
    distribution for every background size r (in the Gaussian regime), so one network serves
    all r. Returns float32 of h's shape."""
    x = np.asarray(h, dtype=np.float64)
    p = np.asarray(shape, dtype=np.float64)
    if x.shape[1:] != p.shape:
        raise TrigkitError(f"histograms of shape {list(x.shape[1:])} do not match the "
                           f"background shape {list(p.shape)}")
    total = x.reshape(len(x), -1).sum(axis=1).reshape(-1, *([1] * p.ndim))
    mu = np.maximum(total * p[None], min_expected)
    return ((x - total * p[None]) / np.sqrt(mu)).astype(np.float32)
