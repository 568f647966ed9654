"""Toy monojet + MET events for the offline tabular models (see sw/docs/tabular.md).

The Standard-Model background is Z(nu nu) + jets; the signals are dark-matter simplified models
and an axion-like particle (``MONOJET_MODELS``). Each event is a hadronic recoil of transverse
momentum pT_R against an invisible system, generated as follows (all values configurable in
:class:`MonojetConfig`):

- pT_R follows a power law ``dN/dpT ~ pT^-n`` between ``recoil_pt_min_gev`` and
  ``recoil_pt_max_gev``; the index n is the process's first spectrum parameter (SM 5.0, heavier
  mediators harder, i.e. smaller n). Below the selection thresholds so that resolution feeds
  events across them.
- The leading jet's pseudorapidity is Gaussian around 0 with the process's width (second
  spectrum parameter: SM 1.45, heavier or s-channel mediators more central), narrowed at high
  recoil by ``1 / (1 + eta_pt_slope * ln(pT_R / recoil_pt_min_gev))``; phi is uniform.
- ``n_jets = 1 + Poisson(extra_jets_mean * (1 + extra_jets_log_slope * ln(pT_R / min)))``.
  With extra jets the leading jet takes a fraction z ~ U(lead_fraction_min, 1) of the recoil,
  with a small azimuthal tilt; the other jets balance the rest (their scalar sum enters ht).
- Detector: jet pT smeared by ``sqrt(a^2 / pT + c^2)`` (stochastic a, constant c), eta and phi
  by Gaussians; MET is minus the vector sum of the reconstructed jets plus a Gaussian soft term
  per component. Only the leading jet is kept as an object; the others enter ht and MET.
- Selection: met > ``met_min_gev``, jet_pt > ``jet_pt_min_gev``, |jet_eta| < ``jet_eta_max``,
  dphi(jet, MET) > ``dphi_min``; rejected events are replaced by new ones.

Simplifications: no pile-up, no leptons or photons, one power law per process instead of matrix
elements and parton showers, the recoil's rapidity is not modelled beyond the leading jet's eta.

The generator is vectorised and deterministic: the same configuration, process and seed give
the same events, and the first k events do not depend on how many are requested.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trigkit import __version__
from trigkit.core.config import from_dict, require_range, to_dict
from trigkit.core.errors import ConfigError, TrigkitError

from .sampling import CHUNK, MAX_ROUNDS, check_count, event_stream, power_law
from .tabular import write_table_h5

#: Signal hypotheses (default spectra in MonojetConfig.spectra): DMsimp vector (v), axial-vector
#: (a) and loop-induced scalar (s) mediators of the given mass in GeV, and an ALP coupled to
#: gluons (dimension-5 EFT, the hardest spectrum).
MONOJET_MODELS = (
    "dmsimp_v_500", "dmsimp_v_1000", "dmsimp_v_2000", "dmsimp_a_1000", "dmsimp_a_2000",
    "dmsimp_s_500", "alp_gg",
)
#: Columns of generate_monojet (n_jets is int64, the rest float32).
MONOJET_COLUMNS = ("jet_pt", "jet_eta", "jet_phi", "met", "met_phi", "dphi_jet_met", "n_jets",
                   "ht")


def _default_spectra() -> dict[str, tuple[float, ...]]:
    return {
        "sm": (5.0, 1.45),
        "dmsimp_v_500": (4.3, 1.2),
        "dmsimp_v_1000": (3.8, 1.05),
        "dmsimp_v_2000": (3.4, 0.95),
        "dmsimp_a_1000": (3.7, 1.0),
        "dmsimp_a_2000": (3.3, 0.9),
        "dmsimp_s_500": (4.2, 0.9),
        "alp_gg": (2.9, 1.0),
    }


@dataclass(frozen=True)
class MonojetConfig:
    """Monojet + MET toy (GeV, radians).

    Attributes:
        spectra: process -> (power-law index n of the recoil pT, leading-jet eta width); must
            hold ``sm``; the other keys are the signal hypotheses (default MONOJET_MODELS).
        recoil_pt_min_gev, recoil_pt_max_gev: generated recoil pT range.
        eta_pt_slope: narrowing of the eta distribution with ln(recoil pT).
        extra_jets_mean: mean number of additional jets (Poisson) at the lowest recoil.
        extra_jets_log_slope: growth of that mean with ln(recoil pT / recoil_pt_min_gev).
        lead_fraction_min: smallest leading-jet share of the recoil in multi-jet events.
        extra_jet_pt_min_gev: smallest pT of an additional jet (enters ht).
        jet_res_stochastic: stochastic term a of the jet pT resolution (sqrt(GeV)).
        jet_res_constant: constant term c of the jet pT resolution.
        jet_eta_res, jet_phi_res: jet direction resolutions.
        met_soft_sigma_gev: Gaussian soft-term resolution per MET component.
        met_min_gev, jet_pt_min_gev: selection thresholds on MET and leading-jet pT.
        jet_eta_max: leading-jet acceptance |eta| < jet_eta_max.
        dphi_min: minimum azimuthal separation of the leading jet and MET.
    """

    spectra: dict[str, tuple[float, ...]] = field(default_factory=_default_spectra)
    recoil_pt_min_gev: float = 150.0
    recoil_pt_max_gev: float = 3000.0
    eta_pt_slope: float = 0.15
    extra_jets_mean: float = 0.6
    extra_jets_log_slope: float = 0.5
    lead_fraction_min: float = 0.6
    extra_jet_pt_min_gev: float = 30.0
    jet_res_stochastic: float = 1.0
    jet_res_constant: float = 0.05
    jet_eta_res: float = 0.02
    jet_phi_res: float = 0.02
    met_soft_sigma_gev: float = 15.0
    met_min_gev: float = 200.0
    jet_pt_min_gev: float = 200.0
    jet_eta_max: float = 2.4
    dphi_min: float = 0.4

    def validate(self) -> None:
        if "sm" not in self.spectra:
            raise ConfigError("monojet spectra must hold the background process 'sm'")
        for name, params in self.spectra.items():
            if len(params) != 2:
                raise ConfigError(
                    f"monojet spectra.{name} has {len(params)} values; give [pt_index, eta_sigma]"
                )
            require_range(f"monojet spectra.{name}[0] (pt index)", params[0], 1.0, 20.0,
                          lo_open=True)
            require_range(f"monojet spectra.{name}[1] (eta sigma)", params[1], 0.05, 10.0)
        require_range("monojet recoil_pt_min_gev", self.recoil_pt_min_gev, 0.0, lo_open=True)
        require_range("monojet recoil_pt_max_gev", self.recoil_pt_max_gev,
                      self.recoil_pt_min_gev, lo_open=True)
        require_range("monojet eta_pt_slope", self.eta_pt_slope, 0.0, 5.0)
        require_range("monojet extra_jets_mean", self.extra_jets_mean, 0.0, 10.0)
        require_range("monojet extra_jets_log_slope", self.extra_jets_log_slope, 0.0, 10.0)
        require_range("monojet lead_fraction_min", self.lead_fraction_min, 0.5, 1.0)
        require_range("monojet extra_jet_pt_min_gev", self.extra_jet_pt_min_gev, 0.0)
        require_range("monojet jet_res_stochastic", self.jet_res_stochastic, 0.0, 10.0)
        require_range("monojet jet_res_constant", self.jet_res_constant, 0.0, 1.0)
        require_range("monojet jet_eta_res", self.jet_eta_res, 0.0, 1.0)
        require_range("monojet jet_phi_res", self.jet_phi_res, 0.0, 1.0)
        require_range("monojet met_soft_sigma_gev", self.met_soft_sigma_gev, 0.0, 1000.0)
        require_range("monojet met_min_gev", self.met_min_gev, 0.0, self.recoil_pt_max_gev)
        require_range("monojet jet_pt_min_gev", self.jet_pt_min_gev, 0.0,
                      self.recoil_pt_max_gev)
        require_range("monojet jet_eta_max", self.jet_eta_max, 0.0, 5.0, lo_open=True)
        require_range("monojet dphi_min", self.dphi_min, 0.0, math.pi, hi_open=True)

    @property
    def processes(self) -> tuple[str, ...]:
        """``sm`` followed by the signal hypotheses, in label order."""
        return ("sm", *(k for k in self.spectra if k != "sm"))

    @property
    def models(self) -> tuple[str, ...]:
        return self.processes[1:]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MonojetConfig:
        return from_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)



def _wrap(phi: np.ndarray) -> np.ndarray:
    return (phi + np.pi) % (2.0 * np.pi) - np.pi


def _monojet_candidates(cfg: MonojetConfig, process: str, n: int, rng: np.random.Generator
                        ) -> dict[str, np.ndarray]:
    pt_index, eta_sigma = cfg.spectra[process]
    lo = cfg.recoil_pt_min_gev
    pt_r = power_law(rng, n, lo, cfg.recoil_pt_max_gev, pt_index)
    log_r = np.log(pt_r / lo)
    phi_r = rng.uniform(-np.pi, np.pi, n)
    eta = rng.standard_normal(n) * eta_sigma / (1.0 + cfg.eta_pt_slope * log_r)

    n_extra = rng.poisson(cfg.extra_jets_mean * (1.0 + cfg.extra_jets_log_slope * log_r))
    z = np.where(n_extra > 0, rng.uniform(cfg.lead_fraction_min, 1.0, n), 1.0)
    tilt = rng.standard_normal(n) * 0.5 * (1.0 - z)
    pt1 = z * pt_r
    phi1 = phi_r + tilt
    # The other jets carry the rest of the recoil vector; their scalar sum is at least that.
    rx = pt_r * np.cos(phi_r) - pt1 * np.cos(phi1)
    ry = pt_r * np.sin(phi_r) - pt1 * np.sin(phi1)
    rest = np.hypot(rx, ry)
    rest_scalar = np.maximum(rest * rng.uniform(1.0, 1.5, n), cfg.extra_jet_pt_min_gev * n_extra)
    rest_scalar = np.where(n_extra > 0, rest_scalar, 0.0)

    def resolution(pt: np.ndarray) -> np.ndarray:
        return np.sqrt(cfg.jet_res_stochastic**2 / np.maximum(pt, 1.0) + cfg.jet_res_constant**2)

    pt1_reco = pt1 * np.maximum(1.0 + rng.standard_normal(n) * resolution(pt1), 0.01)
    rest_scale = np.maximum(1.0 + rng.standard_normal(n) * resolution(rest_scalar + 1.0), 0.0)
    eta_reco = eta + rng.standard_normal(n) * cfg.jet_eta_res
    phi1_reco = _wrap(phi1 + rng.standard_normal(n) * cfg.jet_phi_res)
    soft = rng.standard_normal((2, n)) * cfg.met_soft_sigma_gev
    mx = -(pt1_reco * np.cos(phi1_reco) + rest_scale * rx) + soft[0]
    my = -(pt1_reco * np.sin(phi1_reco) + rest_scale * ry) + soft[1]
    met = np.hypot(mx, my)
    met_phi = np.arctan2(my, mx)
    dphi = np.abs(_wrap(phi1_reco - met_phi))
    return {
        "jet_pt": pt1_reco, "jet_eta": eta_reco, "jet_phi": phi1_reco, "met": met,
        "met_phi": met_phi, "dphi_jet_met": dphi, "n_jets": 1 + n_extra,
        "ht": pt1_reco + rest_scale * rest_scalar,
    }


def generate_monojet(cfg: MonojetConfig, process: str, n: int, seed: int
                     ) -> dict[str, np.ndarray]:
    """``n`` selected events of ``process`` (``sm`` or a signal hypothesis): MONOJET_COLUMNS."""
    n = check_count(n)
    if process not in cfg.spectra:
        raise TrigkitError(
            f"unknown monojet process {process!r}; allowed: {', '.join(cfg.processes)}"
        )
    rng = event_stream(seed, process)
    parts: list[dict[str, np.ndarray]] = []
    have = 0
    for _ in range(MAX_ROUNDS):
        if have >= n:
            break
        c = _monojet_candidates(cfg, process, CHUNK, rng)
        keep = ((c["met"] > cfg.met_min_gev) & (c["jet_pt"] > cfg.jet_pt_min_gev)
                & (np.abs(c["jet_eta"]) < cfg.jet_eta_max) & (c["dphi_jet_met"] > cfg.dphi_min))
        parts.append({k: v[keep] for k, v in c.items()})
        have += int(keep.sum())
    else:
        raise TrigkitError(
            f"monojet selection keeps too few {process} events ({have} of {MAX_ROUNDS * CHUNK} "
            "candidates); lower met_min_gev / jet_pt_min_gev or raise recoil_pt_max_gev"
        )
    out = {}
    for k in MONOJET_COLUMNS:
        arr = np.concatenate([p[k] for p in parts])[:n] if parts else np.zeros(0)
        out[k] = arr.astype(np.int64 if k == "n_jets" else np.float32)
    return out


def generate_monojet_table(cfg: MonojetConfig, n_per_process: int, seed: int,
                           processes: tuple[str, ...] | list[str] | None = None
                           ) -> tuple[dict[str, np.ndarray], list[str]]:
    """All processes in one table with a ``label`` column; returns (columns, label_names).

    ``processes`` must start with ``sm`` (label 0); the default is ``cfg.processes``. Label k is
    the k-th entry of the returned label_names.
    """
    names = list(processes) if processes is not None else list(cfg.processes)
    if not names or names[0] != "sm":
        raise TrigkitError(f"processes must start with 'sm' (label 0); got {names}")
    dup = sorted({p for p in names if names.count(p) > 1})
    if dup:
        raise TrigkitError(f"process {dup[0]!r} is listed twice")
    parts = [generate_monojet(cfg, p, n_per_process, seed) for p in names]
    cols = {k: np.concatenate([p[k] for p in parts]) for k in MONOJET_COLUMNS}
    cols["label"] = np.repeat(np.arange(len(names), dtype=np.int64), check_count(n_per_process))
    return cols, names


def write_monojet_h5(
    path: str | os.PathLike,
    cfg: MonojetConfig,
    n_per_process: int,
    seed: int,
    processes: tuple[str, ...] | list[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``n_per_process`` events of each process as one table (trigkit.tabular layout).

    Columns MONOJET_COLUMNS + ``label`` (0 = sm, k = k-th signal); attributes ``label_names``
    (["sm", *models]), ``generator`` (monojet), ``config``, ``seed`` and ``trigkit_version``.
    """
    cols, names = generate_monojet_table(cfg, n_per_process, seed, processes)
    attrs = {"label_names": names, "generator": "monojet", "config": cfg.to_dict(),
             "seed": seed, "n_per_process": n_per_process, "trigkit_version": __version__}
    return write_table_h5(path, cols, attrs, overwrite=overwrite)
