"""Toy generator of two-layer calorimeter jet images and readers for jet-image files.

The model (all numbers configurable; see sw/docs/jets.md and :class:`JetConfig`)
------------------------------------------------------------------------------
Four jet classes (labels in :data:`LABEL_NAMES`) at pT 250-500 GeV, |eta| < 2:

- ``qcd``: one light quark or gluon showering by soft-collinear emissions (density
  2 C alpha_s / pi dz/z dtheta/theta, kT cut-off, angular ordering, recoil, two generations).
- ``top``: t -> b W, W -> q q' with Breit-Wigner masses and two-body decays in the rest frames,
  boosted to the lab; the three quarks must lie inside the jet radius; each shower within the
  angle to its nearest neighbour (colour coherence).
- ``darkphoton``: a hadronically decaying dark photon (0.4-2 GeV), or with probability 0.3 two
  of them from a 10-40 GeV parent (two close-by prongs); no QCD radiation, decays late so the
  deposit is mostly hadronic.
- ``darkshower`` (semi-visible jet): a 200 GeV mediator X -> q Q_d; the dark quark showers in
  a dark SU(3) (alpha_dark 0.3, cut-off Lambda_D 5 GeV) into dark pions (5 GeV) and dark rhos
  (8.3 GeV), whose system D is put on exact X -> q D kinematics (q and D contained like the
  top); the SM quark showers as in QCD; a fraction r_inv = 0.3 of the mesons are invisible
  (missing pT along the jet), the others decay to a quark pair each (a soft prong).

Partons become hadrons with a kT ~ 0.35 GeV spread; pile-up adds soft particles uniformly over
the image. Each particle's energy is split between an EM and a hadronic sampling calorimeter
(per-jet fluctuating EM fraction) and smeared with a/sqrt(E) (+) b resolution. Images are
``(n, 2, H, W)`` float32, channel 0 EM, 1 HAD, in GeV of pT per pixel (or unit sum), after the
preprocessing chain of :mod:`trigkit.jetprep`. Jets are generated in fixed-size chunks with
random streams spawned from the seed, so a seed always gives the same jets.

Longer than 500 lines: the shower, hadronisation and calorimeter model of the four jet
classes share private kinematics helpers and one random-stream discipline.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from trigkit.core.errors import TrigkitError
from trigkit.core.io import chunk_progress
from trigkit.offline.jetprep import (
    centre,
    crop,
    flip,
    image_observables,
    normalise,
    pixelate,
    rotate,
    wrap_phi,
)

from .config import (
    BW_TRUNCATION,
    CA,
    CF,
    CHUNK_JETS,
    HADRON_MAX_ANGLE,
    LABEL_NAMES,
    LABELS,
    MAX_CONTAINMENT_TRIES,
    PILEUP_MARGIN,
    SAMPLES,
    TRUTH_UNITS,
    JetConfig,
)


# ---- kinematics helpers ---------------------------------------------------------------------
def _p4(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, m: np.ndarray | float = 0.0):
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return np.sqrt(px**2 + py**2 + pz**2 + np.asarray(m) ** 2), px, py, pz


def _pt_eta_phi(px: np.ndarray, py: np.ndarray, pz: np.ndarray):
    pt = np.hypot(px, py)
    return pt, np.arcsinh(pz / pt), np.arctan2(py, px)


def _boost(p4: tuple, beta: tuple) -> tuple:
    """Boost 4-vectors ``p4`` = (E, px, py, pz) by velocity ``beta`` = (bx, by, bz)."""
    e, px, py, pz = p4
    bx, by, bz = beta
    b2 = bx**2 + by**2 + bz**2
    gamma = 1.0 / np.sqrt(1.0 - b2)
    bp = bx * px + by * py + bz * pz
    k = np.where(b2 > 0, (gamma - 1.0) * bp / np.where(b2 > 0, b2, 1.0), 0.0) + gamma * e
    return gamma * (e + bp), px + k * bx, py + k * by, pz + k * bz


def _two_body(rng: np.random.Generator, parent: tuple, m0: np.ndarray, m1: np.ndarray,
              m2: np.ndarray) -> tuple[tuple, tuple]:
    """Isotropic two-body decays of ``parent`` (mass m0) into masses m1, m2, in the lab."""
    n = len(m0)
    p = np.sqrt(np.maximum((m0**2 - (m1 + m2) ** 2) * (m0**2 - (m1 - m2) ** 2), 0.0)) / (2 * m0)
    cos_t = rng.uniform(-1.0, 1.0, n)
    sin_t = np.sqrt(1.0 - cos_t**2)
    ph = rng.uniform(0.0, 2.0 * np.pi, n)
    nx, ny, nz = sin_t * np.cos(ph), sin_t * np.sin(ph), cos_t
    beta = (parent[1] / parent[0], parent[2] / parent[0], parent[3] / parent[0])
    d1 = _boost((np.sqrt(p**2 + m1**2), p * nx, p * ny, p * nz), beta)
    d2 = _boost((np.sqrt(p**2 + m2**2), -p * nx, -p * ny, -p * nz), beta)
    return d1, d2


def _breit_wigner(rng: np.random.Generator, m0: float, width: float, n: int) -> np.ndarray:
    """Breit-Wigner (Cauchy) masses truncated to m0 +- BW_TRUNCATION widths."""
    if width <= 0:
        return np.full(n, m0)
    edge = math.atan(2.0 * BW_TRUNCATION)
    return m0 + 0.5 * width * np.tan(rng.uniform(-edge, edge, n))


def _delta_r(eta1, phi1, eta2, phi2) -> np.ndarray:
    return np.hypot(eta1 - eta2, wrap_phi(phi1 - phi2))


def _jet_pt(cfg: JetConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    """Jet pT from dN/dpT ~ pT^-index on [pt_min, pt_max] (inverse CDF)."""
    a, b, k = cfg.pt_min_gev, cfg.pt_max_gev, cfg.pt_spectrum_index
    u = rng.random(n)
    if k == 0:
        return a + (b - a) * u
    if k == 1:
        return a * (b / a) ** u
    e = 1.0 - k
    return (a**e + u * (b**e - a**e)) ** (1.0 / e)


# ---- shower, hadronisation, calorimeter -----------------------------------------------------
@dataclass(frozen=True)
class _Gauge:
    """Fixed coupling and kT cut-off of a shower (QCD, or the dark SU(3) of dark showers)."""

    alpha: float
    kt_min: float


def _qcd(cfg: JetConfig) -> _Gauge:
    return _Gauge(cfg.alpha_s, cfg.shower_kt_min_gev)


@dataclass
class _Partons:
    """Flat parton (or particle) list; ``jet`` indexes the jet in the batch."""

    jet: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray

    @staticmethod
    def concat(parts: list[_Partons]) -> _Partons:
        return _Partons(*(np.concatenate([getattr(p, f) for p in parts])
                          for f in ("jet", "pt", "eta", "phi")))


def _emit(cfg: JetConfig, rng: np.random.Generator, em: _Partons, theta_max: np.ndarray,
          colour: np.ndarray, gauge: _Gauge) -> tuple[_Partons, _Partons, np.ndarray]:
    """One generation of soft-collinear emissions from the partons ``em``.

    Emission candidates are Poisson with density 2 C alpha / pi in (ln 1/z, ln 1/theta) over
    [z_min, z_max] x [theta_min, theta_max]; those with z theta pT below the cut-off are vetoed.
    A parton's emissions take, in order of decreasing angle, the fraction z of what it has
    left; the parton recoils so the pT-weighted centroid is unchanged. Returns the recoiled
    emitters, the emissions and their angles.
    """
    n = len(em.pt)
    lz = math.log(cfg.shower_z_max / cfg.shower_z_min)
    lt = np.log(np.maximum(theta_max / cfg.shower_theta_min, 1.0))
    k = rng.poisson(2.0 * colour * gauge.alpha / math.pi * lz * lt)
    par = np.repeat(np.arange(n), k)
    z = cfg.shower_z_min * np.exp(lz * rng.random(par.size))
    theta = cfg.shower_theta_min * np.exp(lt[par] * rng.random(par.size))
    psi = rng.uniform(0.0, 2.0 * np.pi, par.size)
    keep = z * theta * em.pt[par] > gauge.kt_min
    order = np.lexsort((-theta[keep], par[keep]))
    par, z, theta, psi = (a[keep][order] for a in (par, z, theta, psi))
    l1z = np.log1p(-z)
    cs = np.cumsum(l1z)
    first = np.searchsorted(par, par, side="left")
    before = cs - l1z - (cs[first] - l1z[first]) if par.size else l1z
    child_pt = z * em.pt[par] * np.exp(before)
    left = em.pt * np.exp(np.bincount(par, l1z, minlength=n))
    deta, dphi = theta * np.cos(psi), theta * np.sin(psi)
    parent = _Partons(
        em.jet, left,
        em.eta - np.bincount(par, child_pt * deta, minlength=n) / left,
        wrap_phi(em.phi - np.bincount(par, child_pt * dphi, minlength=n) / left),
    )
    child = _Partons(em.jet[par], child_pt, em.eta[par] + deta, wrap_phi(em.phi[par] + dphi))
    return parent, child, theta


def _shower(cfg: JetConfig, rng: np.random.Generator, hard: _Partons, theta_max: np.ndarray,
            colour: np.ndarray, gauge: _Gauge) -> _Partons:
    """Final partons after ``shower_generations`` generations; emissions radiate as gluons
    (of QCD or of the dark SU(3), per ``gauge``) within their own emission angle (angular
    ordering)."""
    final = []
    emitters = hard
    for _ in range(cfg.shower_generations):
        parent, emitters, theta_max = _emit(cfg, rng, emitters, theta_max, colour, gauge)
        colour = np.full(len(emitters.pt), CA)
        final.append(parent)
    final.append(emitters)
    return _Partons.concat(final)


def _hadronise(rng: np.random.Generator, partons: _Partons, n_had: np.ndarray,
               kt: np.ndarray) -> tuple[_Partons, np.ndarray]:
    """Split each parton into ``n_had`` collinear-ish hadrons sharing its pT (flat on the
    simplex) with angular spread kT / pT_hadron (Gaussian per coordinate, capped). Returns the
    hadrons and the index of each one's parton."""
    idx = np.repeat(np.arange(len(partons.pt)), n_had)
    e = rng.exponential(size=idx.size)
    x = e / np.bincount(idx, e, minlength=len(partons.pt))[idx]
    pt = x * partons.pt[idx]
    sigma = np.minimum(kt[idx] / np.maximum(pt, 1e-9), HADRON_MAX_ANGLE)
    eta = partons.eta[idx] + sigma * rng.standard_normal(idx.size)
    phi = wrap_phi(partons.phi[idx] + sigma * rng.standard_normal(idx.size))
    return _Partons(partons.jet[idx], pt, eta, phi), idx


def _n_hadrons(cfg: JetConfig, rng: np.random.Generator, pt: np.ndarray) -> np.ndarray:
    return 1 + rng.poisson(cfg.hadrons_per_log_pt * np.log1p(np.maximum(pt, 0.0)))


def _beta(rng: np.random.Generator, mean: np.ndarray | float, conc: float, n: int) -> np.ndarray:
    mean = np.broadcast_to(np.asarray(mean, dtype=np.float64), (n,))
    return rng.beta(mean * conc, (1.0 - mean) * conc)


def _smear(rng: np.random.Generator, energy: np.ndarray, a: float, b: float) -> np.ndarray:
    """Calorimeter response: Gamma-distributed with mean ``energy`` and variance
    a^2 E + b^2 E^2 (positive, unbiased; a/sqrt(E) (+) b relative resolution)."""
    scale = a * a + b * b * energy
    ok = (scale > 0) & (energy > 0)
    shape = np.divide(energy, scale, out=np.zeros_like(energy), where=ok)
    draw = rng.gamma(np.where(ok, shape, 1.0), np.where(ok, scale, 1.0))
    return np.where(ok, draw, energy)


def _pad(jet: np.ndarray, n: int, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Flat per-particle arrays to padded (n, M) arrays (zeros beyond each jet's particles)
    plus ``mask``."""
    order = np.argsort(jet, kind="stable")
    js = jet[order]
    counts = np.bincount(jet, minlength=n)
    starts = np.cumsum(counts) - counts
    pos = np.arange(js.size) - starts[js]
    width = max(int(counts.max()) if n else 0, 1)
    out = {}
    for key, val in arrays.items():
        a = np.zeros((n, width), val.dtype)
        a[js, pos] = val[order]
        out[key] = a
    mask = np.zeros((n, width), bool)
    mask[js, pos] = True
    out["mask"] = mask
    return out


def _jet_mass(p: _Partons, n: int) -> np.ndarray:
    e, px, py, pz = _p4(p.pt, p.eta, p.phi)
    s = [np.bincount(p.jet, w, minlength=n) for w in (e, px, py, pz)]
    return np.sqrt(np.maximum(s[0] ** 2 - s[1] ** 2 - s[2] ** 2 - s[3] ** 2, 0.0))


# ---- the jet classes ------------------------------------------------------------------------
def _qcd_partons(cfg: JetConfig, rng: np.random.Generator, pt, eta, phi):
    n = len(pt)
    colour = np.where(rng.random(n) < cfg.qcd_gluon_fraction, CA, CF)
    hard = _Partons(np.arange(n), pt, eta, phi)
    partons = _shower(cfg, rng, hard, np.full(n, cfg.jet_radius), colour, _qcd(cfg))
    return partons, np.ones(n, np.int8), np.zeros(n)


def _top_decays(cfg: JetConfig, rng: np.random.Generator, pt, eta, phi) -> list[tuple]:
    """(pt, eta, phi) of b, q, q' for top quarks along (pt, eta, phi)."""
    n = len(pt)
    mt = _breit_wigner(rng, cfg.top_mass_gev, cfg.top_width_gev, n)
    mw = _breit_wigner(rng, cfg.w_mass_gev, cfg.w_width_gev, n)
    top = _p4(pt, eta, phi, mt)
    b, w = _two_body(rng, top, mt, np.full(n, cfg.b_mass_gev), mw)
    q1, q2 = _two_body(rng, w, mw, np.zeros(n), np.zeros(n))
    return [_pt_eta_phi(*v[1:]) for v in (b, q1, q2)]


def _top_partons(cfg: JetConfig, rng: np.random.Generator, pt, eta, phi):
    n = len(pt)
    quarks = [np.zeros((n, 3)) for _ in range(3)]  # pt, eta, phi of b, q, q'
    todo = np.arange(n)
    for _ in range(MAX_CONTAINMENT_TRIES):
        if todo.size == 0:
            break
        dec = _top_decays(cfg, rng, pt[todo], eta[todo], phi[todo])
        inside = np.all([_delta_r(d[1], d[2], eta[todo], phi[todo]) < cfg.jet_radius
                         for d in dec], axis=0)
        for j, d in enumerate(dec):
            for c in range(3):
                quarks[c][todo[inside], j] = d[c][inside]
        todo = todo[~inside]
    if todo.size:
        raise TrigkitError(
            f"{todo.size} top decays were not contained in jet_radius = {cfg.jet_radius:g} "
            f"after {MAX_CONTAINMENT_TRIES} tries; raise jets.jet_radius or jets.pt_min_gev"
        )
    qpt, qeta, qphi = quarks
    # colour coherence: each quark radiates within the angle to its nearest neighbour
    d = np.stack([_delta_r(qeta[:, i], qphi[:, i], qeta[:, j], qphi[:, j])
                  for i, j in ((0, 1), (0, 2), (1, 2))], axis=1)
    theta_max = np.minimum(np.stack([np.minimum(d[:, 0], d[:, 1]), np.minimum(d[:, 0], d[:, 2]),
                                     np.minimum(d[:, 1], d[:, 2])], axis=1), cfg.jet_radius)
    hard = _Partons(np.repeat(np.arange(n), 3), qpt.ravel(), qeta.ravel(), qphi.ravel())
    partons = _shower(cfg, rng, hard, theta_max.ravel(), np.full(3 * n, CF), _qcd(cfg))
    return partons, np.full(n, 3, np.int8), np.zeros(n)


def _darkphoton_hadrons(cfg: JetConfig, rng: np.random.Generator, pt, eta, phi):
    """Dark photons (one, or two from a heavier parent) decaying straight into hadrons."""
    n = len(pt)
    lo, hi = math.log(cfg.darkphoton_mass_min_gev), math.log(cfg.darkphoton_mass_max_gev)
    two = rng.random(n) < cfg.darkphoton_two_prong_fraction
    m_parent = rng.uniform(cfg.darkphoton_parent_mass_min_gev,
                           cfg.darkphoton_parent_mass_max_gev, n)
    m1, m2 = np.exp(rng.uniform(lo, hi, (2, n)))
    parent = _p4(pt, eta, phi, np.where(two, m_parent, m1))
    d1, d2 = _two_body(rng, parent, m_parent, m1, m2)
    i2 = np.flatnonzero(two)
    p1 = [np.where(two, v, w) for v, w in zip(_pt_eta_phi(*d1[1:]), (pt, eta, phi), strict=True)]
    p2 = [v[i2] for v in _pt_eta_phi(*d2[1:])]
    gd = _Partons(np.concatenate([np.arange(n), i2]), *(np.concatenate([a, b])
                                                       for a, b in zip(p1, p2, strict=True)))
    mass = np.concatenate([m1, m2[i2]])
    n_had = 2 + rng.poisson(cfg.darkphoton_hadrons_mean - 2.0, len(mass))
    hadrons, src = _hadronise(rng, gd, n_had, 0.5 * mass)
    # scale the hadrons' offsets from their dark photon so the system has its mass (the mass
    # is linear in the opening angles at small angles; offsets stay within HADRON_MAX_ANGLE)
    m_now = _jet_mass(_Partons(src, hadrons.pt, hadrons.eta, hadrons.phi), len(mass))
    scale = np.where(m_now > 0, mass / np.where(m_now > 0, m_now, 1.0), 1.0)[src]
    lim = HADRON_MAX_ANGLE
    hadrons.eta = gd.eta[src] + np.clip(scale * (hadrons.eta - gd.eta[src]), -lim, lim)
    hadrons.phi = wrap_phi(gd.phi[src] + np.clip(scale * wrap_phi(hadrons.phi - gd.phi[src]),
                                                 -lim, lim))
    return hadrons, np.where(two, 2, 1).astype(np.int8)


def _dark_mesons(cfg: JetConfig, rng: np.random.Generator,
                 dark: _Partons) -> tuple[_Partons, np.ndarray]:
    """Dark mesons of the final dark partons and their masses.

    Dark hadronisation is the SM one in units of the dark rho mass: 1 + Poisson(
    hadrons_per_log_pt * ln(1 + pT / m_rho_D)) mesons per dark parton sharing its pT, spread
    by kT = Lambda_D. A meson is a rho_D with probability ``darkshower_vector_fraction``, else
    a pi_D.
    """
    m_pi = cfg.darkshower_pion_mass_gev
    m_rho = m_pi / cfg.darkshower_pion_rho_mass_ratio
    n_mesons = 1 + rng.poisson(cfg.hadrons_per_log_pt * np.log1p(dark.pt / m_rho))
    mesons, _ = _hadronise(rng, dark, n_mesons, np.full(len(dark.pt), cfg.darkshower_lambda_gev))
    mass = np.where(rng.random(len(mesons.pt)) < cfg.darkshower_vector_fraction, m_rho, m_pi)
    return mesons, mass


def _recoil(x: tuple, dark_q: tuple, mesons: _Partons, mass: np.ndarray, m_x: float):
    """Exact X -> q D kinematics once the massless dark quark ``dark_q`` has become the meson
    system D of mass m_D: D keeps the dark quark's direction in the X rest frame with the
    two-body momentum for masses (0, m_D), its mesons follow it (boosted from D's old rest
    frame to the new one) and the SM quark takes the rest. Returns the SM quark's and the
    mesons' 4-vectors, D's 4-vector and whether m_D < m_X (the others are meaningless)."""
    n = len(x[0])
    p = _p4(mesons.pt, mesons.eta, mesons.phi, mass)
    d = tuple(np.bincount(mesons.jet, c, minlength=n) for c in p)
    m_d = np.sqrt(np.maximum(d[0] ** 2 - d[1] ** 2 - d[2] ** 2 - d[3] ** 2, 0.0))
    ok = m_d < m_x
    m_d = np.where(ok, m_d, 0.5 * m_x)  # placeholder for rejected systems
    beta_x = tuple(c / x[0] for c in x[1:])
    rest = _boost(dark_q, tuple(-b for b in beta_x))
    p_star = (m_x**2 - m_d**2) / (2.0 * m_x)
    u = tuple(c / np.sqrt(rest[1] ** 2 + rest[2] ** 2 + rest[3] ** 2) for c in rest[1:])
    d_new = _boost((np.sqrt(p_star**2 + m_d**2), *(p_star * c for c in u)), beta_x)
    q = _boost((p_star, *(-p_star * c for c in u)), beta_x)
    j = mesons.jet
    to_rest = tuple(-(c / d[0])[j] for c in d[1:])
    to_lab = tuple((c / d_new[0])[j] for c in d_new[1:])
    return q, _boost(_boost(p, to_rest), to_lab), d_new, ok


def _dark_systems(cfg: JetConfig, rng: np.random.Generator, pt, eta, phi):
    """Mediators X -> q Q_d along (pt, eta, phi), the dark shower of Q_d and its dark mesons,
    with exact X -> q D kinematics (:func:`_recoil`). Regenerated until m_D < m_X and the SM
    quark and D lie within ΔR < jet_radius of the axis. Returns the SM quarks (pt, eta, phi),
    the mesons (``jet`` indexes the mediator) and the meson masses."""
    n, m_x = len(pt), cfg.darkshower_mediator_mass_gev
    gauge = _Gauge(cfg.darkshower_alpha_dark, cfg.darkshower_lambda_gev)
    quark = np.zeros((3, n))
    none = _Partons(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0))
    found = [(none, np.zeros(0))]  # (mesons, masses) of the accepted jets
    todo = np.arange(n)
    for _ in range(MAX_CONTAINMENT_TRIES):
        if todo.size == 0:
            break
        k, mx = todo.size, np.full(todo.size, m_x)
        x = _p4(pt[todo], eta[todo], phi[todo], mx)
        _, dark_q = _two_body(rng, x, mx, np.zeros(k), np.zeros(k))
        hard = _Partons(np.arange(k), *_pt_eta_phi(*dark_q[1:]))
        dark = _shower(cfg, rng, hard, np.full(k, cfg.jet_radius), np.full(k, CF), gauge)
        mesons, mass = _dark_mesons(cfg, rng, dark)
        q, p_mesons, d_new, ok = _recoil(x, dark_q, mesons, mass, m_x)
        q, d_new = _pt_eta_phi(*q[1:]), _pt_eta_phi(*d_new[1:])
        for v in (q, d_new):
            ok &= _delta_r(v[1], v[2], eta[todo], phi[todo]) < cfg.jet_radius
        quark[:, todo[ok]] = np.array(q)[:, ok]
        keep = ok[mesons.jet]
        found.append((_Partons(todo[mesons.jet[keep]],
                               *(c[keep] for c in _pt_eta_phi(*p_mesons[1:]))), mass[keep]))
        todo = todo[~ok]
    if todo.size:
        raise TrigkitError(
            f"{todo.size} dark-shower mediator decays were not contained in jet_radius = "
            f"{cfg.jet_radius:g} after {MAX_CONTAINMENT_TRIES} tries; raise jets.jet_radius or "
            "jets.pt_min_gev, or lower jets.darkshower_mediator_mass_gev"
        )
    return quark, _Partons.concat([f[0] for f in found]), np.concatenate([f[1] for f in found])


def _meson_decays(rng: np.random.Generator, mesons: _Partons, mass: np.ndarray) -> _Partons:
    """The quark pairs of isotropic two-body decays of ``mesons`` (exact 4-vectors)."""
    k = len(mass)
    q1, q2 = _two_body(rng, _p4(mesons.pt, mesons.eta, mesons.phi, mass), mass, np.zeros(k),
                       np.zeros(k))
    pairs = zip(_pt_eta_phi(*q1[1:]), _pt_eta_phi(*q2[1:]), strict=True)
    return _Partons(np.concatenate([mesons.jet, mesons.jet]), *(np.concatenate(p) for p in pairs))


def _darkshower_partons(cfg: JetConfig, rng: np.random.Generator, pt, eta, phi):
    """Semi-visible jets: the SM quark's QCD shower and the quarks of the visible dark-meson
    decays. A meson is invisible with probability r_inv; prongs are 1 + the visible mesons;
    the invisible pT is the magnitude of the invisible mesons' summed pT over the jet pT."""
    n = len(pt)
    quark, mesons, mass = _dark_systems(cfg, rng, pt, eta, phi)
    sm = _shower(cfg, rng, _Partons(np.arange(n), *quark), np.full(n, cfg.jet_radius),
                 np.full(n, CF), _qcd(cfg))
    visible = rng.random(len(mass)) >= cfg.darkshower_r_inv
    shown = _Partons(*(getattr(mesons, f)[visible] for f in ("jet", "pt", "eta", "phi")))
    quarks = _meson_decays(rng, shown, mass[visible])
    lost = ~visible
    px, py = (np.bincount(mesons.jet[lost], mesons.pt[lost] * f(mesons.phi[lost]), minlength=n)
              for f in (np.cos, np.sin))
    n_prongs = np.minimum(1 + np.bincount(shown.jet, minlength=n), np.iinfo(np.int8).max)
    return _Partons.concat([sm, quarks]), n_prongs.astype(np.int8), np.hypot(px, py) / pt


#: Parton makers of the showering classes: (partons, n_prongs, invisible pT / jet pT).
_PARTONS = {"qcd": _qcd_partons, "top": _top_partons, "darkshower": _darkshower_partons}


def _constituents(cfg: JetConfig, kind: str, n: int, rng: np.random.Generator) -> dict:
    """Padded constituents and truth of ``n`` jets of one class (see generate_constituents)."""
    pt = _jet_pt(cfg, rng, n)
    eta = rng.uniform(-cfg.eta_max, cfg.eta_max, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    if kind == "darkphoton":
        hadrons, n_prongs = _darkphoton_hadrons(cfg, rng, pt, eta, phi)
        invisible = np.zeros(n)
        em_mean = cfg.darkphoton_em_fraction
    else:
        partons, n_prongs, invisible = _PARTONS[kind](cfg, rng, pt, eta, phi)
        n_had = _n_hadrons(cfg, rng, partons.pt)
        hadrons, _ = _hadronise(rng, partons, n_had,
                                np.full(len(partons.pt), cfg.hadron_kt_gev))
        em_mean = cfg.qcd_em_fraction
    jet_mass = _jet_mass(hadrons, n)
    # pile-up: soft particles uniform over (a bit more than) the image window
    half = cfg.window_half + PILEUP_MARGIN
    k = rng.poisson(cfg.pileup_density * (2.0 * half) ** 2, n)
    pj = np.repeat(np.arange(n), k)
    pileup = _Partons(pj, rng.exponential(cfg.pileup_pt_mean_gev, pj.size),
                      eta[pj] + rng.uniform(-half, half, pj.size),
                      wrap_phi(phi[pj] + rng.uniform(-half, half, pj.size)))
    # EM share: per-jet mean fluctuates, each particle about it
    jet_em = _beta(rng, em_mean, cfg.em_fraction_jet_concentration, n)
    kp = cfg.em_fraction_particle_concentration
    f_em = np.concatenate([_beta(rng, jet_em[hadrons.jet], kp, len(hadrons.pt)),
                           _beta(rng, cfg.pileup_em_fraction, kp, len(pileup.pt))])
    parts = _Partons.concat([hadrons, pileup])
    cosh = np.cosh(parts.eta)
    energy = parts.pt * cosh
    em = _smear(rng, energy * f_em, cfg.em_stochastic, cfg.em_constant) / cosh
    had = _smear(rng, energy * (1.0 - f_em), cfg.had_stochastic, cfg.had_constant) / cosh
    is_pu = np.concatenate([np.zeros(len(hadrons.pt), bool), np.ones(len(pileup.pt), bool)])
    out = _pad(parts.jet, n, {"eta": parts.eta, "phi": parts.phi, "pt": parts.pt,
                              "em_pt": em, "had_pt": had, "pileup": is_pu})
    out.update(jet_pt=pt, jet_eta=eta, jet_phi=phi, jet_mass=jet_mass, n_prongs=n_prongs,
               invisible_pt_fraction=invisible, label=np.full(n, LABELS[kind], np.int64))
    return out


def check_request(sample: str, n: int, seed: int, allowed: tuple[str, ...] = SAMPLES) -> None:
    if sample not in allowed:
        raise TrigkitError(f"unknown jet sample {sample!r}; allowed: {', '.join(allowed)}")
    if n < 0:
        raise TrigkitError(f"number of jets = {n} must be >= 0")
    if seed < 0:
        raise TrigkitError(f"seed = {seed} must be >= 0")


def _streams(n: int, seed: int) -> Iterator[tuple[int, int, np.random.Generator]]:
    """(first jet, jets in chunk, generator) for each fixed-size chunk of ``n`` jets."""
    n_chunks = -(-n // CHUNK_JETS)
    for i, ss in enumerate(np.random.SeedSequence(seed).spawn(n_chunks)):
        first = i * CHUNK_JETS
        yield first, min(CHUNK_JETS, n - first), np.random.Generator(np.random.PCG64(ss))


def generate_constituents(cfg: JetConfig, kind: str, n: int, seed: int) -> dict[str, np.ndarray]:
    """Constituents of ``n`` jets of class ``kind`` ("qcd", "darkphoton", "top", "darkshower").

    Padded (n, M) arrays: ``eta``, ``phi`` (absolute detector coordinates), ``pt`` (true
    particle pT), ``em_pt`` and ``had_pt`` (measured EM and hadronic deposits, as pT in GeV),
    ``pileup`` (bool) and ``mask``; per-jet truth ``jet_pt``, ``jet_eta``, ``jet_phi``,
    ``jet_mass`` (particle level, without pile-up), ``n_prongs``, ``invisible_pt_fraction``
    and ``label``. Uses the same random streams as :func:`generate`, so
    ``make_images(cfg, generate_constituents(...))`` equals ``generate(...)["images"]`` for a
    single class.
    """
    check_request(kind, n, seed, LABEL_NAMES)
    chunks = [_constituents(cfg, kind, m, rng) for _, m, rng in _streams(n, seed)]
    if not chunks:
        return _constituents(cfg, kind, 0, np.random.default_rng(0))
    width = max(c["mask"].shape[1] for c in chunks)
    out = {}
    for key in chunks[0]:
        if chunks[0][key].ndim == 2:
            out[key] = np.concatenate([np.pad(c[key], ((0, 0), (0, width - c[key].shape[1])))
                                       for c in chunks])
        else:
            out[key] = np.concatenate([c[key] for c in chunks])
    return out


# ---- images ---------------------------------------------------------------------------------
def _raw_images(cfg: JetConfig, cons: dict[str, np.ndarray]) -> np.ndarray:
    """Preprocessed, pixelated and cropped (not normalised) images in GeV, float64."""
    missing = [k for k in ("eta", "phi", "em_pt", "had_pt", "mask", "jet_eta", "jet_phi")
               if k not in cons]
    if missing:
        raise TrigkitError(f"constituents lack {missing[0]!r}; pass the output of "
                           "generate_constituents")
    mask = cons["mask"]
    em = np.where(mask, cons["em_pt"], 0.0)
    had = np.where(mask, cons["had_pt"], 0.0)
    eta = np.where(mask, cons["eta"] - cons["jet_eta"][:, None], 0.0)
    phi = np.where(mask, wrap_phi(cons["phi"] - cons["jet_phi"][:, None]), 0.0)
    pt = em + had
    if "centre" in cfg.preprocess:
        eta, phi = centre(eta, phi, pt)
    if "rotate" in cfg.preprocess:
        eta, phi = rotate(eta, phi, pt)
    if "flip" in cfg.preprocess:
        eta, phi = flip(eta, phi, pt)
    canvas = cfg.image_size + 2  # pixelate with a one-pixel border, then crop (same result)
    images = np.stack([pixelate(eta, phi, w, canvas, cfg.pixel) for w in (em, had)], axis=1)
    return crop(images, cfg.image_size)


def make_images(cfg: JetConfig, constituents: dict[str, np.ndarray]) -> np.ndarray:
    """Images (n, 2, H, W) float32 (channel 0 EM, 1 HAD; axes eta, phi) of ``constituents``
    with the preprocessing steps in ``cfg.preprocess``; GeV of pT per pixel unless
    ``normalise`` is requested."""
    images = _raw_images(cfg, constituents)
    if "normalise" in cfg.preprocess:
        images = normalise(images)
    return images.astype(np.float32)


def _mixed_labels(cfg: JetConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """Exactly ``mixed_fractions`` of ``n`` (largest remainders), shuffled."""
    frac = np.array([cfg.mixed_fractions.get(k, 0.0) for k in LABEL_NAMES])
    want = frac / frac.sum() * n
    counts = np.floor(want).astype(np.int64)
    extra = np.argsort(-(want - counts), kind="stable")[: n - counts.sum()]
    counts[extra] += 1
    return rng.permutation(np.repeat(np.arange(len(LABEL_NAMES)), counts))


def _generate_chunk(cfg: JetConfig, sample: str, n: int, rng: np.random.Generator) -> dict:
    if sample == "mixed":
        labels = _mixed_labels(cfg, n, rng)
    else:
        labels = np.full(n, LABELS[sample], np.int64)
    size = cfg.image_size
    images = np.zeros((n, 2, size, size), np.float32)
    out = {"images": images, "label": labels.astype(np.int64)}
    truth = {k: np.zeros(n, np.int8 if k == "n_prongs" else np.float32) for k in TRUTH_UNITS}
    for code, kind in enumerate(LABEL_NAMES):
        idx = np.flatnonzero(labels == code)
        if idx.size == 0:
            continue
        cons = _constituents(cfg, kind, idx.size, rng)
        raw = _raw_images(cfg, cons)
        sums = raw.sum(axis=(2, 3))
        total = sums.sum(axis=1)
        obs = image_observables(raw, cfg.pixel)
        truth["jet_pt"][idx] = cons["jet_pt"]
        truth["jet_eta"][idx] = cons["jet_eta"]
        truth["jet_mass"][idx] = cons["jet_mass"]
        truth["n_prongs"][idx] = cons["n_prongs"]
        truth["invisible_pt_fraction"][idx] = cons["invisible_pt_fraction"]
        truth["had_fraction"][idx] = np.where(total > 0, sums[:, 1] / np.where(total > 0, total,
                                                                                1.0), 0.0)
        truth["pixel_pt"][idx] = obs["pt"]
        truth["pixel_mass"][idx] = obs["mass"]
        images[idx] = normalise(raw) if "normalise" in cfg.preprocess else raw
    out.update(truth)
    return out


def empty_chunk(cfg: JetConfig, sample: str) -> dict[str, np.ndarray]:
    """The arrays of zero jets (their dtypes and per-jet shapes, e.g. as a file template)."""
    return _generate_chunk(cfg, sample, 0, np.random.default_rng(0))


def iter_chunks(cfg: JetConfig, sample: str, n: int, seed: int) -> Iterator[tuple[int, dict]]:
    """Yield ``(first_jet, chunk)`` for ``n`` jets of ``sample``, reproducibly from ``seed``."""
    check_request(sample, n, seed)
    for first, m, rng in _streams(n, seed):
        yield first, _generate_chunk(cfg, sample, m, rng)


def jet_progress(it: Iterator, n: int, enabled: bool) -> Iterator:
    """A progress bar over generated jet chunks (when ``enabled``)."""
    return chunk_progress(it, n, enabled, unit="jet", desc="jets")


def generate(cfg: JetConfig, sample: str, n: int, seed: int,
             progress: bool = False) -> dict[str, np.ndarray]:
    """``n`` jets of ``sample`` ("qcd", "darkphoton", "top", "darkshower" or "mixed") in memory.

    Keys: ``images`` (n, 2, H, W) float32, ``label`` (n,) int64 and the per-jet arrays of
    TRUTH_UNITS (``had_fraction``, ``pixel_pt`` and ``pixel_mass`` from the raw images).
    Same arguments give identical arrays.
    """
    chunks = [c for _, c in jet_progress(iter_chunks(cfg, sample, n, seed), n, progress)]
    if not chunks:
        return empty_chunk(cfg, sample)
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

