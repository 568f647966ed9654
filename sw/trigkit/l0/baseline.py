"""The standard L0 barrel coincidence-window (road) trigger, calibrated on simulation.

Algorithm (per event, per pivot hit): every hit in a pivot-station layer at column ``c`` opens
a road in each other layer, ``[c - w, c + w]`` around the straight line to the interaction point
(which in eta-column space is the same column ``c``). The half-width ``w`` depends on the layer
and on the eta region of ``c``; it sets the pT threshold. Majority logic then decides:

- ``low``: at least ``low_majority`` (3) of the 4 BM layers (BM1 and BM2 doublets) in the road;
- ``high``: ``low`` and at least ``high_majority`` (1) of the 2 BO layers in the road;
- ``phase2``: at least ``station_majority`` (3) of the 4 stations BI, BM1, BM2, BO fire, where BI
  fires with ``bi_majority`` (2) of its 3 layers and the doublets with 1 of 2.

The event fires if any pivot hit fires; the first firing column is the region of interest.

Road widths are not guessed: :func:`calibrate_roads` simulates prompt muons at exactly the
threshold pT (noise off), measures the distance from the pivot hit to the nearest hit in each
layer, takes a common quantile ``q`` of those distances per eta region and layer, and bisects
``q`` until the efficiency at threshold, relative to unlimited roads, reaches the target (90 %).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.stats import beta

from trigkit.core.config import from_dict, require_range, to_dict
from trigkit.core.errors import ConfigError, TrigkitError
from trigkit.core.io import write_json_atomic

from .detector import LABELS, DetectorConfig, SimConfig
from .simulate import simulate

Mode = Literal["low", "high", "phase2"]
MODES: tuple[str, ...] = ("low", "high", "phase2")
#: Bunch-crossing frequency used to turn a per-crossing probability into a rate.
BUNCH_CROSSING_HZ = 40.0e6
_BATCH = 2048


@dataclass(frozen=True)
class BaselineConfig:
    """Settings of the coincidence trigger and of its road calibration.

    Attributes:
        mode: ``low`` (3/4 BM), ``high`` (3/4 BM + 1/2 BO) or ``phase2`` (3 of 4 stations).
        threshold_gev: pT threshold the roads are calibrated for.
        target_efficiency: efficiency at the threshold relative to unlimited roads, in (0, 1).
        n_regions: eta regions of the pivot plane with their own road widths.
        calib_events: prompt muons simulated at the threshold for the calibration.
        calib_seed: seed of that calibration sample.
        low_majority: BM layers required (of 4) for low-pT.
        high_majority: BO layers required (of 2) for high-pT.
        bi_majority: BI layers (of 3) for the BI station to fire in phase2.
        station_majority: stations required (of 4) in phase2.
    """

    mode: Mode = "high"
    threshold_gev: float = 20.0
    target_efficiency: float = 0.90
    n_regions: int = 8
    calib_events: int = 40000
    calib_seed: int = 20261123
    low_majority: int = 3
    high_majority: int = 1
    bi_majority: int = 2
    station_majority: int = 3

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"baseline mode {self.mode!r} unknown; allowed: {', '.join(MODES)}")
        require_range("baseline.threshold_gev", self.threshold_gev, 0.0, lo_open=True)
        require_range("baseline.target_efficiency", self.target_efficiency, 0.0, 1.0,
                      lo_open=True, hi_open=True)
        require_range("baseline.n_regions", self.n_regions, 1, 384)
        require_range("baseline.calib_events", self.calib_events, 100)
        require_range("baseline.low_majority", self.low_majority, 1, 4)
        require_range("baseline.high_majority", self.high_majority, 1, 2)
        require_range("baseline.bi_majority", self.bi_majority, 1, 3)
        require_range("baseline.station_majority", self.station_majority, 1, 4)


@dataclass(frozen=True)
class Roads:
    """Calibrated half-widths (columns) per eta region (rows) and layer (columns)."""

    config: BaselineConfig
    half_widths: np.ndarray  # (n_regions, n_layers) int
    quantile: float = float("nan")
    efficiency_at_threshold: float = float("nan")
    detector: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": to_dict(self.config),
            "half_widths": self.half_widths.tolist(),
            "quantile": self.quantile,
            "efficiency_at_threshold": self.efficiency_at_threshold,
            "detector": self.detector,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Roads:
        try:
            cfg = from_dict(BaselineConfig, data["config"])
            widths = np.asarray(data["half_widths"], dtype=np.int64)
            return cls(cfg, widths, data.get("quantile", math.nan),
                       data.get("efficiency_at_threshold", math.nan), data.get("detector", {}))
        except (KeyError, TypeError, ValueError) as err:
            raise TrigkitError(
                f"roads file is malformed ({err}); recalibrate with trigkit baseline"
            ) from None

    def save(self, path: str | Path) -> Path:
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Roads:
        p = Path(path)
        if not p.is_file():
            raise TrigkitError(
                f"roads file {p} not found; create it with trigkit baseline --out DIR"
            )
        try:
            return cls.from_dict(json.loads(p.read_text()))
        except json.JSONDecodeError as err:
            raise TrigkitError(f"roads file {p} is not JSON ({err})") from None

    def check_detector(self, det: DetectorConfig) -> None:
        if self.half_widths.shape[1] != det.n_layers:
            raise TrigkitError(
                f"roads have {self.half_widths.shape[1]} layers but the detector has {det.n_layers}"
            )


def _windowed_any(hits_row: np.ndarray, widths_per_col: np.ndarray) -> np.ndarray:
    """For each column c: does ``hits_row`` (N, C) have a hit in [c - w(c), c + w(c)]?"""
    n_cols = hits_row.shape[1]
    cs = np.zeros((hits_row.shape[0], n_cols + 1), dtype=np.int32)
    np.cumsum(hits_row, axis=1, out=cs[:, 1:])
    cols = np.arange(n_cols)
    lo = np.clip(cols - widths_per_col, 0, n_cols)
    hi = np.clip(cols + widths_per_col + 1, 0, n_cols)
    return (cs[:, hi] - cs[:, lo]) > 0


def _station_rows(det: DetectorConfig, name: str) -> tuple[int, ...]:
    if name not in det.stations:
        raise TrigkitError(
            f"the coincidence trigger needs station {name!r}; the detector has "
            + ", ".join(det.stations)
        )
    return det.stations[name]


def _fires(
    in_road: np.ndarray, pivot: np.ndarray, det: DetectorConfig, cfg: BaselineConfig
) -> np.ndarray:
    """Majority logic per pivot column: in_road (N, L, C) bool, pivot (N, C) bool -> (N, C)."""
    bm = _station_rows(det, "BM1") + _station_rows(det, "BM2")
    low = pivot & (in_road[:, list(bm)].sum(axis=1) >= cfg.low_majority)
    if cfg.mode == "low":
        return low
    if cfg.mode == "high":
        bo = in_road[:, list(_station_rows(det, "BO"))].sum(axis=1) >= cfg.high_majority
        return low & bo
    stations = 0
    for name, need in (("BI", cfg.bi_majority), ("BM1", 1), ("BM2", 1), ("BO", 1)):
        stations = stations + (in_road[:, list(_station_rows(det, name))].sum(axis=1) >= need)
    return pivot & (stations >= cfg.station_majority)


def _column_widths(det: DetectorConfig, widths: np.ndarray) -> np.ndarray:
    """(n_regions, L) region widths -> (L, C) width at every pivot column."""
    n_regions = widths.shape[0]
    region = np.arange(det.n_eta_bins) * n_regions // det.n_eta_bins
    return widths[region].T


def run_trigger(
    hits: np.ndarray, det: DetectorConfig, roads: Roads
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the coincidence trigger to images (N, L, C).

    Returns ``decision`` (N,) bool and ``roi_column`` (N,) int (-1 where the event did not fire).
    """
    hits = np.asarray(hits)
    if hits.ndim != 3 or hits.shape[1:] != det.image_shape:
        raise TrigkitError(
            f"hit images have shape {hits.shape[1:]} but the detector expects {det.image_shape}"
        )
    roads.check_detector(det)
    col_widths = _column_widths(det, roads.half_widths)
    pivot_rows = list(_station_rows(det, det.pivot_station))
    decision = np.zeros(len(hits), dtype=bool)
    roi = np.full(len(hits), -1, dtype=np.int64)
    for start in range(0, len(hits), _BATCH):
        h = hits[start:start + _BATCH].astype(np.uint8, copy=False)
        in_road = np.stack(
            [_windowed_any(h[:, row], col_widths[row]) for row in range(det.n_layers)], axis=1
        )
        pivot = h[:, pivot_rows].any(axis=1)
        fires = _fires(in_road, pivot, det, roads.config)
        any_fire = fires.any(axis=1)
        decision[start:start + len(h)] = any_fire
        roi[start:start + len(h)] = np.where(any_fire, fires.argmax(axis=1), -1)
    return decision, roi


def nearest_hit_distance(hits: np.ndarray) -> np.ndarray:
    """Distance in columns from every column to the nearest hit in the same row.

    ``hits`` (..., C) -> float32 (..., C), ``inf`` for empty rows.
    """
    n_cols = hits.shape[-1]
    cols = np.arange(n_cols, dtype=np.float32)
    on = hits > 0
    last = np.maximum.accumulate(np.where(on, cols, -np.inf), axis=-1)
    nxt = np.flip(np.minimum.accumulate(np.flip(np.where(on, cols, np.inf), -1), axis=-1), -1)
    return np.minimum(cols - last, nxt - cols).astype(np.float32)


def calibrate_roads(
    sim_cfg: SimConfig, cfg: BaselineConfig, progress: bool = False
) -> Roads:
    """Derive road widths from prompt muons simulated at exactly ``cfg.threshold_gev``.

    For every pivot hit of every calibration event (noise off) the distance to the nearest hit
    in each layer is measured once; widths are the ``q``-quantile of those distances per eta
    region and layer, and ``q`` is bisected until the trigger, evaluated on the same pivot hits
    exactly as :func:`run_trigger` does, reaches the target efficiency relative to unlimited
    roads.
    """
    det = sim_cfg.detector
    calib = SimConfig(
        detector=replace(det, noise_rate=0.0, tracklet_rate=0.0, burst_rate=0.0),
        generator=replace(sim_cfg.generator, pt_min_gev=cfg.threshold_gev,
                          pt_max_gev=cfg.threshold_gev),
    )
    hits = simulate(calib, "prompt", cfg.calib_events, cfg.calib_seed, progress=progress)["hits"]
    pivot_rows = list(_station_rows(det, det.pivot_station))
    ev, col = np.nonzero(hits[:, pivot_rows].any(axis=1))  # every pivot hit seeds a road
    dist = np.empty((ev.size, det.n_layers), dtype=np.float32)
    for start in range(0, len(hits), _BATCH):
        sel = (ev >= start) & (ev < start + _BATCH)
        d = nearest_hit_distance(hits[start:start + _BATCH])
        dist[sel] = d[ev[sel] - start, :, col[sel]]
    region = col * cfg.n_regions // det.n_eta_bins
    # The muon's own distance distribution: use each event's first pivot hit for the quantiles.
    first = np.r_[True, ev[1:] != ev[:-1]]
    seeds = np.ones((ev.size, 1), dtype=bool)

    def widths_at(q: float) -> np.ndarray:
        w = np.zeros((cfg.n_regions, det.n_layers), dtype=np.int64)
        for r in range(cfg.n_regions):
            in_region = first & (region == r)
            for layer in range(det.n_layers):
                d = dist[in_region & np.isfinite(dist[:, layer]), layer]
                w[r, layer] = int(np.ceil(np.quantile(d, q))) if d.size else 0
        return w

    def efficiency_with(w: np.ndarray) -> float:
        fires = _fires((dist <= w[region])[:, :, None], seeds, det, cfg)[:, 0]
        return np.bincount(ev[fires], minlength=len(hits)).astype(bool).mean()

    plateau = efficiency_with(np.full((cfg.n_regions, det.n_layers), np.inf))
    if plateau == 0:
        raise TrigkitError(
            "no calibration muon fires even with unlimited roads; check the geometry"
        )
    lo, hi = 0.0, 1.0
    best = widths_at(1.0)
    for _ in range(16):
        mid = 0.5 * (lo + hi)
        w = widths_at(mid)
        if efficiency_with(w) / plateau >= cfg.target_efficiency:
            hi, best = mid, w
        else:
            lo = mid
    return Roads(cfg, best, quantile=hi, efficiency_at_threshold=efficiency_with(best) / plateau,
                 detector={"layer_names": list(det.layer_names)})


def efficiency(passed: np.ndarray, cl: float = 0.683) -> tuple[float, float, float]:
    """Efficiency with its Clopper-Pearson interval (lower, upper) at confidence ``cl``."""
    n = int(passed.size)
    k = int(np.count_nonzero(passed))
    if n == 0:
        return math.nan, math.nan, math.nan
    alpha = 1 - cl
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return k / n, lo, hi


def turn_on(pt: np.ndarray, passed: np.ndarray, edges: np.ndarray) -> dict[str, list[float]]:
    """Efficiency versus pT in bins ``edges`` with Clopper-Pearson 68 % intervals."""
    out: dict[str, list[float]] = {"pt_lo": [], "pt_hi": [], "eff": [], "err_lo": [], "err_hi": [],
                                   "n": []}
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (pt >= lo) & (pt < hi)
        e, elo, ehi = efficiency(passed[sel])
        out["pt_lo"].append(float(lo))
        out["pt_hi"].append(float(hi))
        out["eff"].append(e)
        out["err_lo"].append(e - elo)
        out["err_hi"].append(ehi - e)
        out["n"].append(int(sel.sum()))
    return out


def fake_rate_hz(passed: np.ndarray) -> dict[str, float]:
    """Trigger rate per sector from noise-only events: fraction fired x 40 MHz, with a 68 % CL
    interval (and the 95 % CL upper limit when nothing fired)."""
    frac, lo, hi = efficiency(passed)

    n = passed.size
    k = int(np.count_nonzero(passed))
    ul95 = 1.0 if k == n else float(beta.ppf(0.95, k + 1, n - k))
    return {
        "events": int(n), "fired": k, "fraction": frac,
        "rate_hz": frac * BUNCH_CROSSING_HZ,
        "rate_hz_lo": lo * BUNCH_CROSSING_HZ, "rate_hz_hi": hi * BUNCH_CROSSING_HZ,
        "rate_hz_ul95": ul95 * BUNCH_CROSSING_HZ,
    }


@dataclass(frozen=True)
class StudyConfig:
    """Event counts of the baseline performance study."""

    turn_on_events: int = 40000
    noise_events: int = 200000
    signal_events: int = 20000
    noise_scan: tuple[float, ...] = (0.0, 1e-3, 2e-3, 5e-3, 1e-2)
    noise_scan_events: int = 40000
    seed: int = 7

    def validate(self) -> None:
        for name in ("turn_on_events", "noise_events", "signal_events", "noise_scan_events"):
            require_range(f"study.{name}", getattr(self, name), 100)
        for r in self.noise_scan:
            require_range("study.noise_scan", r, 0.0, 0.1)


def study(
    sim_cfg: SimConfig, roads_by_mode: dict[str, Roads], study_cfg: StudyConfig,
    progress: bool = False,
) -> dict[str, Any]:
    """Measure turn-on, noise rate and signal efficiencies of each calibrated trigger mode."""
    det = sim_cfg.detector
    g = sim_cfg.generator
    seeds = np.random.SeedSequence(study_cfg.seed).generate_state(8)
    results: dict[str, Any] = {"modes": {}, "noise_rate_per_strip": det.noise_rate}
    prompt = simulate(sim_cfg, "prompt", study_cfg.turn_on_events, int(seeds[0]), progress)
    noise = simulate(sim_cfg, "noise", study_cfg.noise_events, int(seeds[1]), progress)
    nonpointing = simulate(sim_cfg, "nonpointing", study_cfg.signal_events, int(seeds[2]), progress)
    dark = simulate(sim_cfg, "darkphoton", study_cfg.signal_events, int(seeds[3]), progress)
    scan = [
        (rate, simulate(sim_cfg.replace(detector={"noise_rate": rate}), "noise",
                        study_cfg.noise_scan_events, int(seeds[4]), progress)["hits"])
        for rate in study_cfg.noise_scan
    ]
    edges = np.unique(np.concatenate([np.arange(g.pt_min_gev, 30.0, 1.0),
                                      np.arange(30.0, g.pt_max_gev + 1e-9, 2.5)]))
    for mode, roads in roads_by_mode.items():
        thr = roads.config.threshold_gev
        fired_prompt = run_trigger(prompt["hits"], det, roads)[0]
        above = prompt["pt"] >= thr
        res = {
            "threshold_gev": thr,
            "half_widths": roads.half_widths.tolist(),
            "calibration_quantile": roads.quantile,
            "efficiency_at_threshold_rel": roads.efficiency_at_threshold,
            "turn_on": turn_on(prompt["pt"], fired_prompt, edges),
            "eff_prompt_above_threshold": efficiency(fired_prompt[above])[0],
            "eff_prompt_below_threshold": efficiency(fired_prompt[~above])[0],
            "noise": fake_rate_hz(run_trigger(noise["hits"], det, roads)[0]),
            "eff_nonpointing": efficiency(run_trigger(nonpointing["hits"], det, roads)[0])[0],
            "eff_darkphoton": efficiency(run_trigger(dark["hits"], det, roads)[0])[0],
            "noise_scan": [
                {"noise_rate": rate, **fake_rate_hz(run_trigger(h, det, roads)[0])}
                for rate, h in scan
            ],
        }
        results["modes"][mode] = res
    results["events"] = {
        "prompt": study_cfg.turn_on_events, "noise": study_cfg.noise_events,
        "nonpointing": study_cfg.signal_events, "darkphoton": study_cfg.signal_events,
        "noise_scan_each": study_cfg.noise_scan_events,
    }
    return results


def efficiency_by_label(decision: np.ndarray, label: np.ndarray) -> dict[str, dict[str, float]]:
    """Fraction of events fired for each event type present in a (mixed) file."""
    names = {v: k for k, v in LABELS.items()}
    out = {}
    for lab in np.unique(label):
        sel = label == lab
        e, lo, hi = efficiency(decision[sel])
        out[names.get(int(lab), str(lab))] = {"events": int(sel.sum()), "fired_fraction": e,
                                               "lo": lo, "hi": hi}
    return out


def study_markdown(results: dict[str, Any]) -> str:
    """Short Markdown summary of :func:`study` results."""
    ev = results["events"]
    lines = [
        "# Coincidence-window baseline",
        "",
        f"Strip noise {results['noise_rate_per_strip']:g} per strip per bunch crossing. Events: "
        f"{ev['prompt']} prompt (pT uniform), {ev['noise']} noise-only, {ev['nonpointing']} "
        f"non-pointing, {ev['darkphoton']} dark-photon.",
        "",
        "| mode | threshold [GeV] | eff. at threshold (rel.) | eff. prompt pT >= thr | "
        "eff. prompt pT < thr | fake rate / sector [Hz] | eff. non-pointing | eff. dark photon |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, r in results["modes"].items():
        nz = r["noise"]
        rate = (f"{nz['rate_hz']:.3g} ({nz['fired']}/{nz['events']})" if nz["fired"]
                else f"< {nz['rate_hz_ul95']:.3g} (95% CL, 0/{nz['events']})")
        lines.append(
            f"| {mode} | {r['threshold_gev']:g} | {r['efficiency_at_threshold_rel']:.3f} | "
            f"{r['eff_prompt_above_threshold']:.3f} | {r['eff_prompt_below_threshold']:.3f} | "
            f"{rate} | {r['eff_nonpointing']:.3f} | {r['eff_darkphoton']:.3f} |"
        )
    lines += ["", "![turn-on](plots/turn_on.png)", "", "![noise scan](plots/noise_scan.png)", ""]
    return "\n".join(lines)
