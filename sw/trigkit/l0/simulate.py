"""Vectorised toy simulation of L0 barrel RPC hit images (one phi sector, 9 x 384).

Physics and geometry are described in :mod:`trigkit.detector` and sw/docs/simulation.md.
Events are generated in fixed-size chunks, each with its own random stream spawned from the
user's seed, so the same seed and configuration always give the same events.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import yaml

from trigkit import __version__
from trigkit.core.errors import TrigkitError
from trigkit.core.io import atomic_path, check_output_path, chunk_progress
from trigkit.core.rootio import write_tree

from .detector import LABELS, SAMPLES, DetectorConfig, GeneratorConfig, SimConfig

#: Events per random-stream chunk. Fixed so that results do not depend on how they are written.
CHUNK_EVENTS = 4096
#: Most muons per event (dark photons give two).
MAX_MUONS = 2
#: Regeneration rounds for events whose muons miss the sector (see simulate_chunk).
MAX_ACCEPTANCE_TRIES = 100
#: Per-event truth arrays written beside ``hits`` (units in ``TRUTH_UNITS``).
TRUTH_UNITS = {
    "label": "", "pt": "GeV", "q": "e", "eta": "", "vtx_r": "cm", "vtx_z": "cm",
    "mu_pt": "GeV", "mu_q": "e", "mu_eta": "", "mu_x": "column", "n_layers_hit": "",
}


def theta_from_eta(eta: np.ndarray | float) -> np.ndarray:
    """Polar angle (rad) of pseudorapidity ``eta``."""
    return 2.0 * np.arctan(np.exp(-np.asarray(eta, dtype=np.float64)))


def eta_from_theta(theta: np.ndarray | float) -> np.ndarray:
    """Pseudorapidity of polar angle ``theta`` (rad)."""
    return -np.log(np.tan(0.5 * np.asarray(theta, dtype=np.float64)))


def scattering_sigma(det: DetectorConfig, p_gev: np.ndarray) -> np.ndarray:
    """RMS plane multiple-scattering angle (Highland) of the calorimeter scatterer."""
    x = det.material_x0
    if x <= 0:
        return np.zeros_like(p_gev)
    return 0.0136 / p_gev * math.sqrt(x) * (1.0 + 0.038 * math.log(x))


def propagate(
    det: DetectorConfig,
    z0: np.ndarray,
    r0: np.ndarray,
    theta: np.ndarray,
    q: np.ndarray,
    p_gev: np.ndarray,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """z (m) where each track crosses each layer; NaN where it does not reach the layer.

    Tracks start at (z0, r0) with polar angle ``theta``; they go straight (with one multiple-
    scattering kick at the scatterer when ``rng`` is given) up to the field boundary, then follow
    a circle of curvature q * 0.3 B / p. Positive muons bend towards larger theta (smaller eta).
    ``p_gev`` may be ``inf`` for straight tracks.
    """
    z0, r0, theta, q, p = (np.asarray(a, dtype=np.float64) for a in (z0, r0, theta, q, p_gev))
    radii = np.asarray(det.layer_radii_m, dtype=np.float64)[None, :]
    rs, rf = det.scatter_radius_m, det.field_start_m

    # Field-free part: straight line, kicked at the scatterer if the track starts inside it.
    inside = r0 < rs
    zs = np.where(inside, z0 + (rs - r0) / np.tan(theta), z0)
    rs_arr = np.where(inside, rs, r0)
    theta1 = theta.copy()
    if rng is not None and det.material_x0 > 0:
        kick = rng.standard_normal(theta.shape) * scattering_sigma(det, p)
        theta1 = np.where(inside, np.clip(theta + kick, 1e-3, np.pi - 1e-3), theta)
    line0 = z0[:, None] + (radii - r0[:, None]) / np.tan(theta)[:, None]
    line1 = zs[:, None] + (radii - rs_arr[:, None]) / np.tan(theta1)[:, None]
    z = np.where(radii < rs_arr[:, None], line0, line1)

    # Field region: circle from the entry point (E_z, E_r) with direction theta1. Written as
    # dz = dR (cos t0 + cos t) / (sin t0 + sin t), which stays exact as the curvature -> 0.
    enters = r0 < rf
    er = np.where(enters, rf, r0)
    ez = np.where(enters, zs + (rf - rs_arr) / np.tan(theta1), z0)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.where(np.isfinite(p), q * 0.299792458 * det.field_tesla / p, 0.0)
        dr = radii - er[:, None]
        c0 = np.cos(theta1)[:, None]
        s0 = np.sin(theta1)[:, None]
        c1 = c0 - k[:, None] * dr
        s1 = np.sqrt(np.clip(1.0 - c1 * c1, 0.0, None))
        arc = ez[:, None] + dr * (c0 + c1) / (s0 + s1)
        arc = np.where(np.abs(c1) < 1.0, arc, np.nan)  # curls up before reaching the layer
    z = np.where(radii >= rf, arc, z)
    return np.where(radii > r0[:, None], z, np.nan)


def crossing_columns(det: DetectorConfig, z: np.ndarray) -> np.ndarray:
    """Continuous image column of each crossing ``z`` (m); NaN outside the image."""
    radii = np.asarray(det.layer_radii_m, dtype=np.float64)
    x = det.eta_to_column(np.arcsinh(z / radii))
    return np.where((x >= 0) & (x < det.n_eta_bins), x, np.nan)


@dataclass
class _Muons:
    """Flat arrays over the muons of a chunk."""

    event: np.ndarray
    slot: np.ndarray
    z0: np.ndarray
    r0: np.ndarray
    theta: np.ndarray
    q: np.ndarray
    pt: np.ndarray

    @staticmethod
    def concat(parts: list[_Muons]) -> _Muons:
        fields = _Muons.__annotations__
        return _Muons(*(np.concatenate([getattr(m, f) for m in parts]) for f in fields))


def _empty_truth(n: int, n_layers: int) -> dict[str, np.ndarray]:
    nan = np.float32(np.nan)
    return {
        "label": np.zeros(n, np.int64),
        "pt": np.full(n, nan, np.float32),
        "q": np.zeros(n, np.int8),
        "eta": np.full(n, nan, np.float32),
        "vtx_r": np.full(n, nan, np.float32),
        "vtx_z": np.full(n, nan, np.float32),
        "mu_pt": np.full((n, MAX_MUONS), nan, np.float32),
        "mu_q": np.zeros((n, MAX_MUONS), np.int8),
        "mu_eta": np.full((n, MAX_MUONS), nan, np.float32),
        "mu_x": np.full((n, MAX_MUONS, n_layers), nan, np.float32),
        "n_layers_hit": np.zeros(n, np.int8),
    }


def _charges(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.where(rng.random(n) < 0.5, -1.0, 1.0)


def _gen_single(
    g: GeneratorConfig, n: int, rng: np.random.Generator, pointing: bool
) -> tuple[dict[str, np.ndarray], _Muons]:
    """One muon per event: from the IP (prompt) or from a displaced origin (non-pointing)."""
    z_ip = rng.standard_normal(n) * g.vertex_z_sigma_m
    pt = rng.uniform(g.pt_min_gev, g.pt_max_gev, n)
    q = _charges(rng, n)
    eta_dir = rng.uniform(g.eta_min, g.eta_max, n)
    if pointing:
        r0 = np.zeros(n)
        z0 = z_ip
        theta = theta_from_eta(eta_dir)
    else:
        r0 = rng.uniform(g.nonpointing_r_min_m, g.nonpointing_r_max_m, n)
        theta_origin = theta_from_eta(eta_dir)
        z0 = z_ip + r0 / np.tan(theta_origin)
        dtheta = rng.uniform(g.nonpointing_dtheta_min, g.nonpointing_dtheta_max, n)
        theta = np.clip(theta_origin + _charges(rng, n) * dtheta, 0.05, np.pi - 0.05)
    truth = {
        "pt": pt, "q": q, "eta": eta_from_theta(theta),
        "vtx_r": r0 * 100.0, "vtx_z": z0 * 100.0,
    }
    idx = np.arange(n)
    return truth, _Muons(idx, np.zeros(n, np.int64), z0, r0, theta, q, pt)


def _gen_darkphoton(
    g: GeneratorConfig, n: int, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], _Muons]:
    """gamma_d -> mu mu: the dark photon flies from the IP and decays at radius R in [r_min, r_max].

    Each muon's pT is uniform in the configured range; the opening angle alpha (R-z plane) is
    shared so that the transverse momentum to the gamma_d direction balances:
    a1 = alpha * p2 / (p1 + p2), a2 = alpha - a1.
    """
    z_ip = rng.standard_normal(n) * g.vertex_z_sigma_m
    r_v = rng.uniform(g.darkphoton_r_min_m, g.darkphoton_r_max_m, n)
    eta_g = rng.uniform(g.eta_min, g.eta_max, n)
    theta_g = theta_from_eta(eta_g)
    z_v = z_ip + r_v / np.tan(theta_g)
    alpha = rng.uniform(g.darkphoton_opening_min, g.darkphoton_opening_max, n)
    pt1 = rng.uniform(g.darkphoton_pt_min_gev, g.darkphoton_pt_max_gev, n)
    pt2 = rng.uniform(g.darkphoton_pt_min_gev, g.darkphoton_pt_max_gev, n)
    # Share the opening angle from approximate momenta, then fix each muon's momentum so its
    # final pT is exactly the drawn one (the balance then holds to second order in alpha).
    a1 = alpha * pt2 / (pt1 + pt2)
    th1 = np.clip(theta_g + a1, 0.05, np.pi - 0.05)
    th2 = np.clip(theta_g - (alpha - a1), 0.05, np.pi - 0.05)
    p1, p2 = pt1 / np.sin(th1), pt2 / np.sin(th2)
    q1 = _charges(rng, n)
    pz = p1 * np.cos(th1) + p2 * np.cos(th2)
    pr = pt1 + pt2
    truth = {
        "pt": pr, "q": np.zeros(n), "eta": np.arcsinh(pz / pr),
        "vtx_r": r_v * 100.0, "vtx_z": z_v * 100.0,
    }
    idx = np.arange(n)
    muons = _Muons(
        np.concatenate([idx, idx]),
        np.concatenate([np.zeros(n, np.int64), np.ones(n, np.int64)]),
        np.concatenate([z_v, z_v]), np.concatenate([r_v, r_v]),
        np.concatenate([th1, th2]), np.concatenate([q1, -q1]),
        np.concatenate([pt1, pt2]),
    )
    return truth, muons


def _event_labels(cfg: SimConfig, sample: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """The event type (label) of each event: one type, or drawn by ``mixed_fractions``."""
    if sample != "mixed":
        return np.full(n, LABELS[sample], dtype=np.int64)
    g = cfg.generator
    names = [k for k in LABELS if g.mixed_fractions.get(k, 0.0) > 0]
    frac = np.array([g.mixed_fractions[k] for k in names], dtype=np.float64)
    kinds = rng.choice(len(names), size=n, p=frac / frac.sum())
    return np.array([LABELS[k] for k in names], dtype=np.int64)[kinds]


def _generate_muons(
    g: GeneratorConfig, labels: np.ndarray, events: np.ndarray, rng: np.random.Generator,
    truth: dict[str, np.ndarray],
) -> _Muons:
    """Muons of ``events`` (indices into the chunk), filling their per-event truth rows."""
    parts = []
    for kind in ("prompt", "nonpointing", "darkphoton"):
        ev = events[labels[events] == LABELS[kind]]
        if ev.size == 0:
            continue
        if kind == "darkphoton":
            t, mu = _gen_darkphoton(g, ev.size, rng)
        else:
            t, mu = _gen_single(g, ev.size, rng, pointing=(kind == "prompt"))
        for key, val in t.items():
            truth[key][ev] = val
        mu.event = ev[mu.event]
        parts.append(mu)
    if not parts:
        return _Muons(*([np.zeros(0, np.int64)] * 2 + [np.zeros(0)] * 5))
    return _Muons.concat(parts)


def _deposit_muons(
    det: DetectorConfig, hits: np.ndarray, x: np.ndarray, rng: np.random.Generator
) -> None:
    """Turn crossing columns ``x`` (n, MAX_MUONS, L) into clusters, with layer efficiency."""
    n, _, n_layers = x.shape
    ev, _, row = np.nonzero(np.isfinite(x))
    if ev.size == 0:
        return
    xv = x[np.isfinite(x)].astype(np.float64)
    eff = np.asarray(det.efficiencies)[row]
    keep = rng.random(ev.size) < eff
    ev, row, xv = ev[keep], row[keep], xv[keep]
    col = np.floor(xv).astype(np.int64)
    frac = xv - col
    cum = np.cumsum(det.cluster_size_probs)
    size = 1 + np.searchsorted(cum, rng.random(ev.size) * cum[-1], side="right")
    size = np.minimum(size, len(det.cluster_size_probs))
    side = np.where(frac >= 0.5, 1, -1)
    cols = [col, np.where(size >= 2, col + side, -1), np.where(size >= 3, col - side, -1)]
    width = det.n_eta_bins
    for c in cols:
        ok = (c >= 0) & (c < width)
        hits[ev[ok], row[ok], c[ok]] = 1


def _add_noise(hits: np.ndarray, rate: float, rng: np.random.Generator) -> None:
    """Uncorrelated noise: an exact Bernoulli(rate) process over all strips (geometric gaps)."""
    if rate <= 0:
        return
    flat = hits.reshape(-1)
    total = flat.size
    expected = total * rate
    positions = []
    start = -1
    while True:
        m = int(expected + 6 * math.sqrt(expected) + 16)
        gaps = rng.geometric(rate, size=m)
        pos = start + np.cumsum(gaps)
        inside = pos[pos < total]
        positions.append(inside)
        if inside.size < m:
            break
        start = int(pos[-1])
        expected = (total - start) * rate
    flat[np.concatenate(positions)] = 1


def _add_cavern_background(det: DetectorConfig, hits: np.ndarray, rng: np.random.Generator) -> None:
    """Correlated background: fake tracklets within one station and bursts of adjacent strips."""
    n = hits.shape[0]
    width = det.n_eta_bins
    if det.tracklet_rate > 0:
        counts = rng.poisson(det.tracklet_rate, n)
        ev = np.repeat(np.arange(n), counts)
        stations = list(det.stations.values())
        st = rng.integers(0, len(stations), ev.size)
        col0 = rng.uniform(0, width, ev.size)
        slope = rng.uniform(-1.5, 1.5, ev.size)  # columns per layer: not pointing to the IP
        effs = np.asarray(det.efficiencies)
        for s_idx, rows in enumerate(stations):
            sel = st == s_idx
            for j, row in enumerate(rows):
                c = np.floor(col0[sel] + slope[sel] * j).astype(np.int64)
                ok = (c >= 0) & (c < width) & (rng.random(c.size) < effs[row])
                hits[ev[sel][ok], row, c[ok]] = 1
    if det.burst_rate > 0:
        counts = rng.poisson(det.burst_rate, n)
        ev = np.repeat(np.arange(n), counts)
        row = rng.integers(0, det.n_layers, ev.size)
        length = rng.integers(2, det.burst_max_strips + 1, ev.size)
        start = rng.integers(0, width, ev.size)
        for k in range(det.burst_max_strips):
            c = start + k
            ok = (k < length) & (c < width)
            hits[ev[ok], row[ok], c[ok]] = 1


def simulate_chunk(cfg: SimConfig, sample: str, n: int, rng: np.random.Generator) -> dict:
    """Generate ``n`` events of ``sample``: ``hits`` (n, L, C) uint8 plus truth arrays.

    With ``generator.require_pivot_crossing`` every muon event is regenerated until a muon
    crosses the pivot station inside the image (the sector's acceptance), so that labels
    describe what the sector can see.
    """
    if sample not in SAMPLES:
        raise TrigkitError(f"unknown sample {sample!r}; allowed: {', '.join(SAMPLES)}")
    det, g = cfg.detector, cfg.generator
    labels = _event_labels(cfg, sample, n, rng)
    truth = _empty_truth(n, det.n_layers)
    truth["label"] = labels
    pivot_rows = list(det.stations[det.pivot_station])
    todo = np.flatnonzero(labels != LABELS["noise"])
    accepted: list[tuple[_Muons, np.ndarray]] = []
    for _ in range(MAX_ACCEPTANCE_TRIES):
        if todo.size == 0:
            break
        mu = _generate_muons(g, labels, todo, rng, truth)
        x = crossing_columns(det, propagate(det, mu.z0, mu.r0, mu.theta, mu.q,
                                            mu.pt / np.sin(mu.theta), rng))
        if g.require_pivot_crossing:
            seen = np.isfinite(x[:, pivot_rows]).any(axis=1)
            ok = np.zeros(n, dtype=bool)
            ok[mu.event[seen]] = True
        else:
            ok = np.ones(n, dtype=bool)
        keep = ok[mu.event]
        accepted.append((_Muons(*(getattr(mu, f)[keep] for f in _Muons.__annotations__)),
                         x[keep]))
        todo = todo[~ok[todo]]
    if todo.size:
        raise TrigkitError(
            f"{todo.size} {sample} events found no muon crossing the pivot station after "
            f"{MAX_ACCEPTANCE_TRIES} tries; check the generator ranges against the detector, or "
            "set generator.require_pivot_crossing: false"
        )
    hits = np.zeros((n, *det.image_shape), dtype=np.uint8)
    if accepted:
        mu = _Muons.concat([m for m, _ in accepted])
        x = np.concatenate([xx for _, xx in accepted])
        truth["mu_x"][mu.event, mu.slot] = x
        truth["mu_pt"][mu.event, mu.slot] = mu.pt
        truth["mu_q"][mu.event, mu.slot] = mu.q
        truth["mu_eta"][mu.event, mu.slot] = eta_from_theta(mu.theta)
        crossed = np.isfinite(truth["mu_x"]).any(axis=1)
        truth["n_layers_hit"] = crossed.sum(axis=1).astype(np.int8)
        _deposit_muons(det, hits, truth["mu_x"], rng)
    _add_noise(hits, det.noise_rate, rng)
    _add_cavern_background(det, hits, rng)
    return {"hits": hits, **truth}


def iter_chunks(
    cfg: SimConfig, sample: str, n_events: int, seed: int
) -> Iterator[tuple[int, dict]]:
    """Yield ``(first_event, chunk)`` for ``n_events`` events, reproducibly from ``seed``."""
    if n_events < 0:
        raise TrigkitError(f"--events = {n_events} must be >= 0")
    if seed < 0:
        raise TrigkitError(f"--seed = {seed} must be >= 0")
    if sample not in SAMPLES:
        raise TrigkitError(f"unknown sample {sample!r}; allowed: {', '.join(SAMPLES)}")
    n_chunks = -(-n_events // CHUNK_EVENTS)
    streams = np.random.SeedSequence(seed).spawn(n_chunks)
    for i, ss in enumerate(streams):
        first = i * CHUNK_EVENTS
        n = min(CHUNK_EVENTS, n_events - first)
        yield first, simulate_chunk(cfg, sample, n, np.random.Generator(np.random.PCG64(ss)))


def simulate(
    cfg: SimConfig, sample: str, n_events: int, seed: int, progress: bool = False
) -> dict[str, np.ndarray]:
    """Simulate ``n_events`` events in memory; same arguments give identical arrays."""
    chunks = [c for _, c in _progress(iter_chunks(cfg, sample, n_events, seed), n_events, progress)]
    if not chunks:
        return simulate_chunk(cfg, sample, 0, np.random.default_rng(0))
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def _progress(it: Iterator, n_events: int, enabled: bool) -> Iterator:
    return chunk_progress(it, n_events, enabled, unit="ev", desc="simulate")


def write_h5(
    path: str | os.PathLike,
    cfg: SimConfig,
    sample: str,
    n_events: int,
    seed: int,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Simulate straight into an HDF5 file (streamed by chunk, written atomically).

    Datasets as in sw/docs/files.md: ``hits`` (N, 9, 384) uint8, ``label`` and the truth arrays;
    the configuration (YAML), sample, seed and trigkit version are file attributes. The file
    is byte-for-byte reproducible for the same arguments.
    """
    out = check_output_path(path, overwrite=overwrite)
    det = cfg.detector
    template = simulate_chunk(cfg, sample, 0, np.random.default_rng(0))
    with atomic_path(out, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            f.attrs["sample"] = sample
            f.attrs["seed"] = seed
            f.attrs["n_events"] = n_events
            f.attrs["config"] = yaml.safe_dump(cfg.to_dict(), sort_keys=True)
            f.attrs["trigkit_version"] = __version__
            f.attrs["labels"] = yaml.safe_dump(LABELS, sort_keys=True)
            f.attrs["layer_names"] = list(det.layer_names)
            dsets = {}
            for key, arr in template.items():
                shape = (n_events, *arr.shape[1:])
                chunks = (min(max(n_events, 1), 1024), *arr.shape[1:])
                dsets[key] = f.create_dataset(
                    key, shape=shape, dtype=arr.dtype, chunks=chunks if n_events else None,
                    compression="lzf" if key == "hits" and n_events else None,
                    track_times=False,
                )
                if key in TRUTH_UNITS:
                    dsets[key].attrs["units"] = TRUTH_UNITS[key]
            chunks = _progress(iter_chunks(cfg, sample, n_events, seed), n_events, progress)
            for first, chunk in chunks:
                for key, arr in chunk.items():
                    dsets[key][first:first + len(arr)] = arr
    return out


def file_attributes(cfg: SimConfig, sample: str, n_events: int, seed: int) -> dict[str, str]:
    """What an event file records beside the events (HDF5 attributes, ROOT TObjStrings)."""
    return {"sample": sample, "seed": str(seed), "n_events": str(n_events),
            "config": yaml.safe_dump(cfg.to_dict(), sort_keys=True),
            "trigkit_version": __version__, "labels": yaml.safe_dump(LABELS, sort_keys=True)}


def write_root(
    path: str | os.PathLike,
    cfg: SimConfig,
    sample: str,
    n_events: int,
    seed: int,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Simulate into a ROOT file: one TTree ``events`` whose branches are the datasets of
    :func:`write_h5` (``hits`` a fixed (9, 384) uint8 array per entry), the file attributes as
    TObjStrings beside it. Written atomically; the same seed gives the same events."""
    chunks = (c for _, c in _progress(iter_chunks(cfg, sample, n_events, seed), n_events,
                                      progress))
    first = simulate_chunk(cfg, sample, 0, np.random.default_rng(0))
    return write_tree(path, itertools.chain([first], chunks),
                      attrs=file_attributes(cfg, sample, n_events, seed), overwrite=overwrite)


def write_events(path: str | os.PathLike, cfg: SimConfig, sample: str, n_events: int,
                 seed: int, overwrite: bool = False, progress: bool = False) -> Path:
    """Simulate into HDF5 (``.h5``/``.hdf5``) or ROOT (``.root``), by the file suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".root":
        return write_root(path, cfg, sample, n_events, seed, overwrite, progress)
    if suffix not in (".h5", ".hdf5"):
        raise TrigkitError(f"--out {path}: write .h5 (HDF5) or .root (ROOT TTree)")
    return write_h5(path, cfg, sample, n_events, seed, overwrite, progress)
