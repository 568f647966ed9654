"""Toy low-pT electron / hadron tracks for the offline tabular models (see
sw/docs/tabular.md).

-----------------------------------------
Tracks of 0.5-5 GeV, electrons (label 1) or charged hadrons (label 0) with the same pT and eta
spectra, in four availability categories (``ELECTRON_CATEGORIES``): a TRT extension exists for
|eta| < ``trt_eta_max`` with probability ``trt_efficiency``; a calorimeter cluster exists with a
probability rising with pT (``calo_efficiency * (1 - exp(-(pT - 0.3 GeV) / calo_turn_on_gev))``).
Features unavailable in a category are NaN; the feature sets are nested
(``ELECTRON_FEATURES``): track features always, TRT features only with TRT, calorimeter features
only with a cluster. The separation grows with pT through physics: transition radiation turns on
with the Lorentz factor (gamma = p / m_e around 2000), E/p separates as the MIP deposit of a
hadron becomes small against its momentum, the calorimeter noise matters less, shower shapes
sharpen. Bremsstrahlung (Bethe-Heitler, ``brem_x0`` radiation lengths) makes the momentum loss
dp/p and the track chi2 of electrons larger. Hadron clusters are an overlapping pi0 photon
(electron-like shower, unrelated energy), a hadronic shower or a MIP deposit. With a good
classifier (2 x 128 MLP) the best category reaches about 50 % efficiency at 5 % fake rate near
1 GeV, 65-70 % near 2 GeV and more than 80 % above 3 GeV.

Simplifications: no conversions or non-prompt electrons, features conditionally independent
apart from the shared bremsstrahlung and hadron-shower variables, 20 toy features instead of the
published 79.

The generator is vectorised and deterministic: the same configuration, process and seed give
the same events, and the first k events do not depend on how many are requested.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trigkit import __version__
from trigkit.core.config import from_dict, require_range, to_dict

from .sampling import CHUNK, check_count, event_stream, power_law
from .tabular import write_table_h5

#: Track categories: with/without TRT extension, with/without calorimeter cluster.
ELECTRON_CATEGORIES = ("trt_calo", "calo_only", "trt_only", "track_only")
#: Features of every track (pt and eta included).
TRACK_FEATURES = ("pt", "eta", "trk_qoverp", "trk_d0", "trk_d0sig", "trk_n_pix", "trk_n_sct",
                  "trk_chi2ndof", "trk_dpp")
#: Transition-radiation tracker features (TRT categories only).
TRT_FEATURES = ("trt_n_hits", "trt_f_ht", "trt_eprob_ht")
#: Calorimeter-cluster features (calorimeter categories only).
CALO_FEATURES = ("calo_eop", "calo_rhad", "calo_reta", "calo_rphi", "calo_weta2", "calo_f1",
                 "calo_f3", "calo_deta1")
#: Category -> its feature columns (nested: track, + TRT, + calorimeter).
ELECTRON_FEATURES: dict[str, tuple[str, ...]] = {
    "trt_calo": TRACK_FEATURES + TRT_FEATURES + CALO_FEATURES,
    "calo_only": TRACK_FEATURES + CALO_FEATURES,
    "trt_only": TRACK_FEATURES + TRT_FEATURES,
    "track_only": TRACK_FEATURES,
}
#: Every column of generate_electrons.
ELECTRON_COLUMNS = ("label", "category", *TRACK_FEATURES, *TRT_FEATURES, *CALO_FEATURES)
ELECTRON_MASS_GEV = 0.000511
#: Share of the material in front of the calorimeter that the track fit sees (silicon).
TRACK_MATERIAL_SHARE = 0.3
#: Transverse energy below which shower-shape fluctuations grow as 1 / E_T.
SHAPE_NOISE_ET_GEV = 5.0


@dataclass(frozen=True)
class ElectronConfig:
    """Low-pT electron / hadron toy (GeV).

    Attributes:
        pt_min_gev, pt_max_gev: track pT range (both classes alike).
        pt_index: dN/dpT ~ pT^-pt_index (1: flat in ln pT).
        eta_max: tracks have |eta| < eta_max (uniform).
        electron_fraction: probability of an electron (label 1).
        trt_eta_max: TRT acceptance |eta| < trt_eta_max.
        trt_efficiency: probability of a TRT extension inside the acceptance.
        calo_efficiency: plateau probability of a matched calorimeter cluster.
        calo_turn_on_gev: pT scale of the cluster probability turn-on.
        trt_hits_mean: mean number of TRT hits (fewer towards the acceptance edge).
        trt_ht_prob_hadron: high-threshold probability per TRT hit of a hadron.
        trt_ht_prob_electron: plateau high-threshold probability of an electron (transition
            radiation saturated).
        trt_tr_gamma_half: Lorentz factor at which transition radiation reaches half its plateau.
        brem_x0: material in radiation lengths before the calorimeter at eta = 0; the track
            fit sees TRACK_MATERIAL_SHARE of it (flat in eta), the rest grows with |eta| as
            1 + 0.5 |eta| and only lowers the cluster energy and R_phi.
        calo_noise_gev: electronic + pile-up noise of a cluster in transverse energy.
        calo_stochastic: stochastic term of the electromagnetic energy resolution (sqrt(GeV)).
        hcal_noise_gev: noise (transverse energy) of the hadronic energy behind the cluster.
        shape_noise: scale of the shower-shape fluctuations (times sqrt(1 + (E0 / E_T)^2),
            E0 = SHAPE_NOISE_ET_GEV).
        hadron_overlap_prob: probability that a hadron's cluster is a nearby pi0 photon's
            electromagnetic shower (the dominant fake at low pT).
        hadron_interaction_prob: probability that another hadron showers in the EM
            calorimeter (otherwise it leaves a minimum-ionising deposit).
        mip_energy_gev: most probable minimum-ionising deposit in the EM calorimeter.
    """

    pt_min_gev: float = 0.5
    pt_max_gev: float = 5.0
    pt_index: float = 1.0
    eta_max: float = 2.5
    electron_fraction: float = 0.5
    trt_eta_max: float = 2.0
    trt_efficiency: float = 0.95
    calo_efficiency: float = 0.92
    calo_turn_on_gev: float = 0.8
    trt_hits_mean: float = 32.0
    trt_ht_prob_hadron: float = 0.05
    trt_ht_prob_electron: float = 0.15
    trt_tr_gamma_half: float = 8000.0
    brem_x0: float = 0.35
    calo_noise_gev: float = 0.5
    calo_stochastic: float = 0.12
    hcal_noise_gev: float = 0.5
    shape_noise: float = 0.55
    hadron_overlap_prob: float = 0.35
    hadron_interaction_prob: float = 0.55
    mip_energy_gev: float = 0.35

    def validate(self) -> None:
        require_range("electrons pt_min_gev", self.pt_min_gev, 0.0, lo_open=True)
        require_range("electrons pt_max_gev", self.pt_max_gev, self.pt_min_gev, lo_open=True)
        require_range("electrons pt_index", self.pt_index, -5.0, 10.0)
        require_range("electrons eta_max", self.eta_max, 0.0, 4.0, lo_open=True)
        require_range("electrons electron_fraction", self.electron_fraction, 0.0, 1.0)
        require_range("electrons trt_eta_max", self.trt_eta_max, 0.0, 4.0)
        require_range("electrons trt_efficiency", self.trt_efficiency, 0.0, 1.0)
        require_range("electrons calo_efficiency", self.calo_efficiency, 0.0, 1.0)
        require_range("electrons calo_turn_on_gev", self.calo_turn_on_gev, 0.0, 100.0,
                      lo_open=True)
        require_range("electrons trt_hits_mean", self.trt_hits_mean, 1.0, 100.0)
        require_range("electrons trt_ht_prob_hadron", self.trt_ht_prob_hadron, 0.0, 1.0)
        require_range("electrons trt_ht_prob_electron", self.trt_ht_prob_electron,
                      self.trt_ht_prob_hadron, 1.0)
        require_range("electrons trt_tr_gamma_half", self.trt_tr_gamma_half, 1.0, lo_open=True)
        require_range("electrons brem_x0", self.brem_x0, 0.0, 5.0)
        require_range("electrons calo_noise_gev", self.calo_noise_gev, 0.0, 10.0)
        require_range("electrons calo_stochastic", self.calo_stochastic, 0.0, 2.0)
        require_range("electrons hcal_noise_gev", self.hcal_noise_gev, 0.0, 10.0)
        require_range("electrons shape_noise", self.shape_noise, 0.0, 100.0)
        require_range("electrons hadron_overlap_prob", self.hadron_overlap_prob, 0.0, 1.0)
        require_range("electrons hadron_interaction_prob", self.hadron_interaction_prob, 0.0, 1.0)
        require_range("electrons mip_energy_gev", self.mip_energy_gev, 0.0, 10.0, lo_open=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ElectronConfig:
        return from_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def _electron_chunk(cfg: ElectronConfig, n: int, rng: np.random.Generator
                    ) -> dict[str, np.ndarray]:
    """One chunk of tracks; every feature computed for all tracks, masked later by category.

    The sections draw from ``rng`` in a fixed order (kinematics, availability, bremsstrahlung,
    track, TRT, calorimeter), so a seed always gives the same tracks."""
    is_e = rng.random(n) < cfg.electron_fraction
    pt = power_law(rng, n, cfg.pt_min_gev, cfg.pt_max_gev, cfg.pt_index)
    eta = rng.uniform(-cfg.eta_max, cfg.eta_max, n)
    aeta = np.abs(eta)
    p = pt * np.cosh(eta)
    q = np.where(rng.random(n) < 0.5, -1.0, 1.0)

    # Availability -> category.
    has_trt = (aeta < cfg.trt_eta_max) & (rng.random(n) < cfg.trt_efficiency)
    p_calo = cfg.calo_efficiency * (1.0 - np.exp(-np.maximum(pt - 0.3, 0.0)
                                                 / cfg.calo_turn_on_gev))
    has_calo = rng.random(n) < p_calo
    category = np.select([has_trt & has_calo, has_calo, has_trt], [0, 1, 2], 3)

    # Bremsstrahlung (Bethe-Heitler): -ln(E_after / E_before) ~ Gamma(t / ln 2) for t radiation
    # lengths; the track fit sees the silicon part of the material (TRACK_MATERIAL_SHARE).
    t = cfg.brem_x0 * (1.0 + 0.5 * aeta)

    def brem(thickness: np.ndarray) -> np.ndarray:
        shape = np.maximum(thickness, 1e-6) / math.log(2.0)
        return np.where(is_e & (thickness > 0), 1.0 - np.exp(-rng.gamma(shape, 1.0, n)), 0.0)

    lost_trk = brem(TRACK_MATERIAL_SHARE * cfg.brem_x0 * np.ones(n))
    lost = 1.0 - (1.0 - lost_trk) * (1.0 - brem((1.0 - TRACK_MATERIAL_SHARE) * t))

    track = _track_features(rng, is_e, pt, p, q, lost_trk)
    trt = _trt_features(cfg, rng, is_e, p, aeta)
    calo = _calo_features(cfg, rng, is_e, pt, eta, p, track.pop("p_meas"), lost)
    cols = {"label": is_e.astype(np.int64), "category": category.astype(np.int64),
            "pt": pt, "eta": eta, **track, **trt, **calo}
    out = {}
    for k, v in cols.items():
        out[k] = v.astype(np.int64 if k in ("label", "category") else np.float32)
    for k in TRT_FEATURES:
        out[k][~has_trt] = np.nan
    for k in CALO_FEATURES:
        out[k][~has_calo] = np.nan
    return out


def _track_features(rng: np.random.Generator, is_e: np.ndarray, pt: np.ndarray, p: np.ndarray,
                    q: np.ndarray, lost_trk: np.ndarray) -> dict[str, np.ndarray]:
    """Track features (and the measured momentum ``p_meas``)."""
    n, g = len(pt), rng.standard_normal
    sig_d0 = np.sqrt(0.010**2 + (0.070 / pt) ** 2)  # mm
    secondary = ~is_e & (rng.random(n) < 0.04)
    d0 = g(n) * sig_d0 * (1.0 + 0.5 * lost_trk) + np.where(
        secondary, rng.laplace(0.0, 0.5, n), 0.0)
    sig_p = 0.015 + 0.01 * pt  # relative momentum resolution
    dpp = lost_trk + g(n) * (0.05 + 0.08 / pt)
    p_meas = p * (1.0 + g(n) * sig_p)
    n_pix = np.clip(4 - rng.binomial(4, 0.03, n) - (is_e & (rng.random(n) < 0.02)), 0, 4)
    n_sct = np.clip(8 - rng.binomial(8, 0.03, n) + rng.binomial(2, 0.2, n), 0, 10)
    chi2 = rng.chisquare(20, n) / 20 * (1.0 + 0.6 * lost_trk)

    return {"trk_qoverp": q / p_meas, "trk_d0": d0, "trk_d0sig": d0 / sig_d0,
            "trk_n_pix": n_pix, "trk_n_sct": n_sct, "trk_chi2ndof": chi2, "trk_dpp": dpp,
            "p_meas": p_meas}


def _trt_features(cfg: ElectronConfig, rng: np.random.Generator, is_e: np.ndarray,
                  p: np.ndarray, aeta: np.ndarray) -> dict[str, np.ndarray]:
    """Transition-radiation tracker features: transition radiation turns on with the Lorentz
    factor of the electron."""
    n_trt = rng.poisson(cfg.trt_hits_mean * np.clip(1.0 - 0.15 * aeta, 0.5, 1.0))
    n_trt = np.maximum(n_trt, 5)
    gamma_e = p / ELECTRON_MASS_GEV
    tr = 1.0 / (1.0 + (cfg.trt_tr_gamma_half / gamma_e) ** 2)
    p_h = cfg.trt_ht_prob_hadron * (1.0 + 0.1 * np.log10(p / 0.14))  # slow dE/dx rise
    p_ht = np.where(is_e, p_h + (cfg.trt_ht_prob_electron - p_h) * tr, p_h)
    n_ht = rng.binomial(n_trt, np.clip(p_ht, 0.0, 1.0))
    f_ht = n_ht / n_trt
    # eProbHT: posterior electron probability from the HT count, with fixed reference
    # probabilities (electron 0.15, hadron 0.05) as a likelihood tool would use.
    pe, ph = 0.15, 0.05
    llr = n_ht * math.log(pe / ph) + (n_trt - n_ht) * math.log((1 - pe) / (1 - ph))
    eprob = 1.0 / (1.0 + np.exp(-llr))

    return {"trt_n_hits": n_trt, "trt_f_ht": f_ht, "trt_eprob_ht": eprob}


def _calo_features(cfg: ElectronConfig, rng: np.random.Generator, is_e: np.ndarray,
                   pt: np.ndarray, eta: np.ndarray, p: np.ndarray, p_meas: np.ndarray,
                   lost: np.ndarray) -> dict[str, np.ndarray]:
    """Calorimeter-cluster features."""
    n, g = len(pt), rng.standard_normal
    # Calorimeter. Electrons deposit their energy (half of the radiated energy is lost on the
    # way). A hadron's cluster is either (a) a nearby pi0 photon's electromagnetic shower
    # overlapping the track (energy unrelated to the track momentum), (b) its own shower,
    # putting a share em of its momentum into the EM calorimeter, or (c) a MIP deposit.
    # Shapes interpolate between electron-like (weight w) and hadron- or MIP-like values, so the
    # calorimeter variables are correlated as in real showers.
    overlap = ~is_e & (rng.random(n) < cfg.hadron_overlap_prob)
    interacts = ~is_e & ~overlap & (rng.random(n) < cfg.hadron_interaction_prob)
    mip_like = ~is_e & ~overlap & ~interacts
    em = rng.beta(2.0, 3.0, n)
    mip = np.minimum(cfg.mip_energy_gev * np.exp(0.25 * g(n)) * np.cosh(eta) ** 0.5, p)
    photon = p * np.exp(0.6 * g(n) - 0.3)
    e_true = np.select([is_e, overlap, interacts],
                       [p * (1.0 - 0.5 * lost), photon + mip, p * em], mip)
    # Noise (pile-up dominated) is constant in transverse energy: cosh(eta) in energy.
    ch = np.cosh(eta)
    sig_e = np.sqrt((cfg.calo_noise_gev * ch) ** 2
                    + cfg.calo_stochastic**2 * np.maximum(e_true, 0.0) + (0.01 * e_true) ** 2)
    e_reco = e_true + g(n) * sig_e
    eop = e_reco / p_meas
    e_pos = np.maximum(e_reco, 0.05)
    et_pos = e_pos / ch
    blur = cfg.shape_noise * np.sqrt(1.0 + (SHAPE_NOISE_ET_GEV / et_pos) ** 2)
    reach = np.clip(p - 0.6, 0.0, 1.0)  # low-momentum hadrons range out before the HCAL
    e_hcal = np.where(interacts, p * (1.0 - em) * rng.uniform(0.3, 1.0, n),
                      np.where(is_e, 0.0, 0.5 * np.exp(0.3 * g(n)) * reach
                               * (1.0 - 0.6 * overlap)))
    rhad = (e_hcal + g(n) * cfg.hcal_noise_gev * ch) / e_pos
    # Electron-likeness of the cluster: 1 for electrons, the photon's share for overlaps,
    # the EM share for showering hadrons, 0 for MIPs.
    w = np.select([is_e, overlap, interacts], [1.0, photon / (photon + mip), em], 0.0)
    hadronic = np.where(mip_like | overlap, 0.0, 1.0)

    def shape(electron: np.ndarray | float, hadron: float, mip_value: float, sigma: float,
              lo: float, hi: float) -> np.ndarray:
        other = hadronic * hadron + (1.0 - hadronic) * mip_value
        return np.clip(w * electron + (1.0 - w) * other + g(n) * sigma * blur, lo, hi)

    reta = shape(0.93 - 0.03 * lost, 0.72, 0.95, 0.03, 0.0, 1.1)
    rphi = shape(0.92 - 0.2 * lost, 0.75, 0.93, 0.04, 0.0, 1.1)
    weta2 = shape(0.0105, 0.0145, 0.0095, 0.0012, 0.0, 0.05)
    f1 = shape(0.33 - 0.03 * np.log(e_pos), 0.10, 0.17, 0.05, -0.1, 1.0)
    f3 = shape(0.01, 0.12, 0.09, 0.02, -0.1, 1.0)
    deta1 = g(n) * np.select([is_e, overlap], [0.004, 0.008], 0.005) * (1.0 + 1.0 / pt)

    return {"calo_eop": eop, "calo_rhad": rhad, "calo_reta": reta, "calo_rphi": rphi,
            "calo_weta2": weta2, "calo_f1": f1, "calo_f3": f3, "calo_deta1": deta1}


def generate_electrons(cfg: ElectronConfig, n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` tracks: ELECTRON_COLUMNS (label 1 electron / 0 hadron, category index into
    ELECTRON_CATEGORIES, int64; features float32, NaN where the category lacks them)."""
    n = check_count(n)
    rng = event_stream(seed, "electrons")
    parts = [_electron_chunk(cfg, CHUNK, rng) for _ in range(-(-n // CHUNK))]
    if not parts:
        parts = [{k: v[:0] for k, v in _electron_chunk(cfg, 1, rng).items()}]
    return {k: np.concatenate([p[k] for p in parts])[:n] for k in ELECTRON_COLUMNS}


def write_electrons_h5(
    path: str | os.PathLike,
    cfg: ElectronConfig,
    n: int,
    seed: int,
    overwrite: bool = False,
) -> Path:
    """Write ``n`` tracks as one table (trigkit.tabular layout): ELECTRON_COLUMNS with
    attributes ``label_names`` (["hadron", "electron"]), ``categories``, ``features`` (category
    -> columns), ``generator``, ``config``, ``seed`` and ``trigkit_version``."""
    cols = generate_electrons(cfg, n, seed)
    attrs = {"label_names": ["hadron", "electron"], "categories": list(ELECTRON_CATEGORIES),
             "features": {k: list(v) for k, v in ELECTRON_FEATURES.items()},
             "generator": "electrons", "config": cfg.to_dict(), "seed": seed,
             "trigkit_version": __version__}
    return write_table_h5(path, cols, attrs, overwrite=overwrite)
