"""A dijet-like resonance toy for weak supervision and density-based searches.

Background ("QCD dijets"): the dijet mass m_jj follows the standard dijet fit function
dN/dm ~ (1 - x)^p1 / x^p2 with x = m_jj / sqrt(s) in [m_min, m_max]; each event has two jets
whose masses are log-normal about ``jet_mass_median`` x (m_jj / m_ref)^``mass_correlation``
(realistic: heavier dijets have heavier jets, so the sidebands and the signal region differ
even without signal; 0: independent, the idealised case) and whose two-to-one-prong ratios
tau21 are Beta(``qcd_tau21_a``, ``qcd_tau21_b``) (one-prong-like, about 0.62).

Signal: a narrow resonance X (mass ``resonance_mass``, Gaussian detector width
``resonance_width`` x mass) decaying to two boosted two-prong particles Y and Z (jet masses
``y_mass`` and ``z_mass``, Gaussian width ``jet_mass_resolution``, tau21 Beta(``sig_tau21_a``,
``sig_tau21_b``), about 0.38).

Per event the file holds ``mjj``, the jets ordered by jet mass (``mj1`` >= ``mj2``, with their
``tau21_1``, ``tau21_2``), ``label`` (0 background, 1 signal) and ``part``: 0 the data
background (``data.events`` events), 1 the signal pool injected into the data
(``signal_events``), 2 and 3 the labelled background and signal of the supervised reference
(``labelled_events`` each, signal-region masses for the background). Network inputs
(:func:`features`): ln mj1, ln mj2, tau21_1, tau21_2, standardised with the data background's
mean and spread (the same fixed transform for every model).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from trigkit import __version__
from trigkit.core.config import from_dict, require_range, to_dict
from trigkit.core.errors import ConfigError
from trigkit.core.io import atomic_path

#: Columns of the file, one value per event.
COLUMNS = ("mjj", "mj1", "mj2", "tau21_1", "tau21_2", "label", "part")
#: Names of the network's input features (:func:`features`).
FEATURE_NAMES = ("ln mj1", "ln mj2", "tau21_1", "tau21_2")
#: ``part`` codes.
DATA_BACKGROUND, SIGNAL_POOL, LABELLED_BACKGROUND, LABELLED_SIGNAL = 0, 1, 2, 3


@dataclass(frozen=True)
class DijetConfig:
    """Settings of the dijet resonance toy (see the module docstring for the model)."""

    sqrt_s: float = 13000.0
    m_min: float = 2800.0
    m_max: float = 4600.0
    p1: float = 10.0
    p2: float = 5.0
    m_ref: float = 3500.0
    jet_mass_median: float = 120.0
    jet_mass_sigma: float = 0.6
    mass_correlation: float = 1.0
    qcd_tau21_a: float = 5.0
    qcd_tau21_b: float = 3.0
    resonance_mass: float = 3500.0
    resonance_width: float = 0.02
    y_mass: float = 500.0
    z_mass: float = 100.0
    jet_mass_resolution: float = 0.06
    sig_tau21_a: float = 3.0
    sig_tau21_b: float = 5.0
    signal_events: int = 20000
    labelled_events: int = 20000
    sr: tuple[float, float] = (3300.0, 3700.0)

    def validate(self) -> None:
        if not 0 < self.m_min < self.m_max < self.sqrt_s:
            raise ConfigError("dijet: need 0 < m_min < m_max < sqrt_s")
        if not self.m_min <= self.sr[0] < self.sr[1] <= self.m_max:
            raise ConfigError(f"dijet: the signal region {list(self.sr)} must lie in "
                              f"[m_min, m_max] = [{self.m_min:g}, {self.m_max:g}]")
        for name in ("jet_mass_median", "jet_mass_sigma", "qcd_tau21_a", "qcd_tau21_b",
                     "resonance_mass", "resonance_width", "y_mass", "z_mass",
                     "jet_mass_resolution", "sig_tau21_a", "sig_tau21_b"):
            require_range(f"dijet.{name}", getattr(self, name), 0.0, lo_open=True)
        require_range("dijet.signal_events", self.signal_events, 0)
        require_range("dijet.labelled_events", self.labelled_events, 10)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DijetConfig:
        return from_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def background_mjj(cfg: DijetConfig, n: int, rng: np.random.Generator,
                   lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Dijet masses from (1 - x)^p1 / x^p2 in [lo, hi] (default the whole range), by inverse
    transform of the numerically integrated density."""
    grid = np.linspace(lo or cfg.m_min, hi or cfg.m_max, 4001)
    x = grid / cfg.sqrt_s
    pdf = (1 - x) ** cfg.p1 / x ** cfg.p2
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
    return np.interp(rng.random(n), cdf / cdf[-1], grid)


def _qcd_jets(cfg: DijetConfig, mjj: np.ndarray, rng: np.random.Generator) -> dict:
    scale = cfg.jet_mass_median * (mjj / cfg.m_ref) ** cfg.mass_correlation
    masses = scale[:, None] * np.exp(cfg.jet_mass_sigma * rng.standard_normal((len(mjj), 2)))
    tau = rng.beta(cfg.qcd_tau21_a, cfg.qcd_tau21_b, (len(mjj), 2))
    return _ordered(mjj, masses, tau, 0)


def _signal_jets(cfg: DijetConfig, n: int, rng: np.random.Generator) -> dict:
    mjj = cfg.resonance_mass * (1 + cfg.resonance_width * rng.standard_normal(n))
    base = np.array([cfg.y_mass, cfg.z_mass])
    masses = base[None, :] * (1 + cfg.jet_mass_resolution * rng.standard_normal((n, 2)))
    masses = np.abs(masses)
    tau = rng.beta(cfg.sig_tau21_a, cfg.sig_tau21_b, (n, 2))
    return _ordered(mjj, masses, tau, 1)


def _ordered(mjj: np.ndarray, masses: np.ndarray, tau: np.ndarray, label: int) -> dict:
    swap = masses[:, 1] > masses[:, 0]
    m1 = np.where(swap, masses[:, 1], masses[:, 0])
    m2 = np.where(swap, masses[:, 0], masses[:, 1])
    t1 = np.where(swap, tau[:, 1], tau[:, 0])
    t2 = np.where(swap, tau[:, 0], tau[:, 1])
    return {"mjj": mjj, "mj1": m1, "mj2": m2, "tau21_1": t1, "tau21_2": t2,
            "label": np.full(len(mjj), label, np.int64)}


def generate(cfg: DijetConfig, n_background: int, seed: int) -> dict[str, np.ndarray]:
    """Every part of the toy (see the module docstring), concatenated, with ``part`` codes.
    Each part has its own random stream spawned from ``seed``; signal masses outside
    [m_min, m_max] are dropped (the search sees only that range)."""
    cfg.validate()
    streams = np.random.SeedSequence(seed).spawn(4)
    rngs = [np.random.default_rng(s) for s in streams]
    parts = [
        _qcd_jets(cfg, background_mjj(cfg, n_background, rngs[0]), rngs[0]),
        _signal_jets(cfg, cfg.signal_events, rngs[1]),
        _qcd_jets(cfg, background_mjj(cfg, cfg.labelled_events, rngs[2], *cfg.sr), rngs[2]),
        _signal_jets(cfg, cfg.labelled_events, rngs[3]),
    ]
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out["part"] = np.concatenate([np.full(len(p["mjj"]), code, np.int8)
                                  for code, p in enumerate(parts)])
    keep = (out["mjj"] >= cfg.m_min) & (out["mjj"] <= cfg.m_max)
    return {k: v[keep] for k, v in out.items()}


def write_dijet_h5(path: Path, cfg: DijetConfig, n_background: int, seed: int) -> Path:
    """The toy in an HDF5 file (one dataset per column, attributes ``config``, ``seed``,
    ``label_names``), written atomically; the same arguments give the same content."""
    events = generate(cfg, n_background, seed)
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=True) as f:
        for key in COLUMNS:
            f.create_dataset(key, data=events[key], track_times=False)
        f.attrs["config"] = json.dumps(cfg.to_dict(), sort_keys=True)
        f.attrs["seed"] = seed
        f.attrs["label_names"] = json.dumps(["background", "signal"])
        f.attrs["trigkit_version"] = __version__
    return Path(path)


def read_dijet_h5(path: Path) -> dict[str, np.ndarray]:
    """Every column of a dijet toy file."""
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in COLUMNS}


def features(events: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> np.ndarray:
    """Network inputs (N, 4): ln mj1, ln mj2, tau21_1, tau21_2 standardised with the
    ``reference`` events' (the data background's) mean and standard deviation."""

    def raw(ev: dict[str, np.ndarray]) -> np.ndarray:
        return np.stack([np.log(ev["mj1"]), np.log(ev["mj2"]), ev["tau21_1"], ev["tau21_2"]],
                        axis=1)

    ref = raw(reference)
    return ((raw(events) - ref.mean(0)) / ref.std(0)).astype(np.float32)


def scaled_mass(mjj: np.ndarray, cfg: DijetConfig) -> np.ndarray:
    """m_jj mapped linearly to [-1, 1] over [m_min, m_max] (a flow's condition)."""
    return (2 * (mjj - cfg.m_min) / (cfg.m_max - cfg.m_min) - 1).astype(np.float32)


def injected(events: dict[str, np.ndarray], fraction: float) -> dict[str, np.ndarray]:
    """The data: the data background plus the first round(fraction x background) events of
    the signal pool (an error when the pool is too small)."""
    bkg = np.flatnonzero(events["part"] == DATA_BACKGROUND)
    pool = np.flatnonzero(events["part"] == SIGNAL_POOL)
    n_sig = int(round(fraction * len(bkg)))
    if n_sig > len(pool):
        raise ConfigError(f"injected fraction {fraction:g} needs {n_sig} signal events; the "
                          f"pool has {len(pool)} (raise data.generator.signal_events)")
    idx = np.concatenate([bkg, pool[:n_sig]])
    return {k: v[idx] for k, v in events.items()}


def labelled(events: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The labelled background and signal of the supervised reference."""
    sel = np.isin(events["part"], (LABELLED_BACKGROUND, LABELLED_SIGNAL))
    return {k: v[sel] for k, v in events.items()}


def in_sr(mjj: np.ndarray, cfg: DijetConfig) -> np.ndarray:
    """Whether each mass lies in the signal region [sr_low, sr_high)."""
    return (mjj >= cfg.sr[0]) & (mjj < cfg.sr[1])
