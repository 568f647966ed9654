"""The L0 detector commands: simulate hit events into a file, draw event displays, and the
coincidence-window baseline (road calibration, turn-on, fake rate, signal efficiencies)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from trigkit.core.config import from_dict
from trigkit.core.errors import TrigkitError
from trigkit.core.io import (
    atomic_path,
    check_output_path,
    open_events_h5,
    reading,
    write_json_atomic,
    write_text_atomic,
)
from trigkit.core.paths import PLOTS
from trigkit.l0.baseline import (
    MODES,
    BaselineConfig,
    Roads,
    StudyConfig,
    calibrate_roads,
    efficiency_by_label,
    run_trigger,
    study,
    study_markdown,
)
from trigkit.l0.detector import SAMPLES, SimConfig, load_sim_config
from trigkit.l0.events import as_hdf5, check_hit_file, read_hit_file, read_hits
from trigkit.l0.plots import event_display, plot_noise_scan, plot_turn_on
from trigkit.l0.simulate import write_events

Say = Callable[[str], None]


def sim_config(config: Path | None, overrides: list[str] | None, noise: float | None = None,
               efficiency: float | None = None) -> SimConfig:
    """Simulation settings from a YAML file, ``section.key=value`` overrides and shortcuts."""
    sets = list(overrides or [])
    if noise is not None:
        sets.append(f"detector.noise_rate={noise!r}")
    if efficiency is not None:
        sets.append(f"detector.efficiency={efficiency!r}")
    return load_sim_config(config, sets)


def simulate_file(cfg: SimConfig, sample: str, events: int, seed: int, out: Path,
                  overwrite: bool = False, progress: bool = True) -> float:
    """Simulate ``events`` of ``sample`` into ``out``; returns the seconds it took."""
    if sample not in SAMPLES:
        raise TrigkitError(f"--sample {sample!r} unknown; allowed: {', '.join(SAMPLES)}")
    if events <= 0:
        raise TrigkitError(f"--events = {events} must be a positive number of events")
    check_output_path(out, overwrite=overwrite)
    t0 = time.perf_counter()
    write_events(out, cfg, sample, events, seed, overwrite=overwrite, progress=progress)
    return time.perf_counter() - t0


def draw_events(input_file: Path, events: int = 8, first: int = 0, out: Path | None = None,
                overwrite: bool = False) -> Path:
    """An event display of ``events`` hit images from ``first`` on, as a PNG."""
    if events <= 0 or first < 0:
        raise TrigkitError("--events must be positive and --first non-negative")
    out = out or input_file.with_name(input_file.stem + "_display.png")
    check_output_path(out, overwrite=overwrite)
    info = check_hit_file(as_hdf5(input_file))
    if first >= info.n_events:
        raise TrigkitError(f"--first {first} is beyond the {info.n_events} events in "
                           f"{input_file}")
    sl = slice(first, min(first + events, info.n_events))
    with open_events_h5(info.path) as f, reading(input_file):
        data = {k: f[k][sl] for k in f
                if isinstance(f[k], h5py.Dataset) and f[k].shape[:1] == (info.n_events,)}
        data["hits"] = read_hits(info.path, f, sl)
    return event_display(data, info.config.detector, out,
                         indices=list(range(len(data["hits"]))),
                         title=f"{input_file.name}: events {sl.start}-{sl.stop - 1}")


def read_baseline_input(path: Path) -> tuple[SimConfig, dict[str, np.ndarray]]:
    """The hit images and labels of an event file (checked before any calibration) and the
    simulation settings it was written with."""
    info, data = read_hit_file(as_hdf5(path))
    return info.config, data


def baseline_roads(modes: list[str] | None, sim_cfg: SimConfig, out: Path, threshold: float,
                   target_eff: float, calib_events: int, roads: Path | None = None,
                   progress: bool = True, say: Say = print) -> dict[str, Roads]:
    """Roads per mode (default: every mode): loaded from ``roads`` or calibrated (and saved to
    OUT/roads_MODE.json)."""
    modes = list(modes or MODES)
    for m in modes:
        if m not in MODES:
            raise TrigkitError(f"--mode {m!r} unknown; allowed: {', '.join(MODES)}")
    if roads and len(modes) != 1:
        raise TrigkitError("--roads applies to one mode; pass --mode too")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TrigkitError(f"cannot create output directory {out}: {err.strerror}") from None
    by_mode: dict[str, Roads] = {}
    for m in modes:
        if roads:
            r = Roads.load(roads)
            r.check_detector(sim_cfg.detector)
        else:
            bcfg = from_dict(BaselineConfig, {
                "mode": m, "threshold_gev": threshold, "target_efficiency": target_eff,
                "calib_events": calib_events,
            })
            t0 = time.perf_counter()
            r = calibrate_roads(sim_cfg, bcfg, progress=progress)
            r.save(out / f"roads_{m}.json")
            say(f"{m}-pT roads for {threshold:g} GeV (quantile {r.quantile:.3f}, "
                f"relative efficiency at threshold {r.efficiency_at_threshold:.3f}, "
                f"{time.perf_counter() - t0:.1f} s) -> {out / f'roads_{m}.json'}")
        by_mode[r.config.mode] = r
    return by_mode


def baseline_decisions(data: dict[str, np.ndarray], sim_cfg: SimConfig,
                       roads: dict[str, Roads], out: Path, say: Say = print) -> Path:
    """Each event's decision and region-of-interest column per mode into OUT/decisions.npz."""
    arrays = {}
    for m, r in roads.items():
        decision, roi = run_trigger(data["hits"], sim_cfg.detector, r)
        arrays[f"decision_{m}"] = decision
        arrays[f"roi_column_{m}"] = roi
        say(f"{m}: " + json.dumps(efficiency_by_label(decision, data["label"])))
    with atomic_path(out / "decisions.npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, label=data["label"], **arrays)
    return out / "decisions.npz"


def baseline_study(sim_cfg: SimConfig, roads: dict[str, Roads], out: Path, turn_on_events: int,
                   noise_events: int, signal_events: int, seed: int,
                   progress: bool = True) -> str:
    """Turn-on, fake rate with a noise scan and signal efficiencies; writes baseline.json,
    baseline.md and plots; returns the Markdown."""
    study_cfg = from_dict(StudyConfig, {
        "turn_on_events": turn_on_events, "noise_events": noise_events,
        "signal_events": signal_events, "seed": seed,
    })
    t0 = time.perf_counter()
    results = study(sim_cfg, roads, study_cfg, progress=progress)
    results["study_seconds"] = time.perf_counter() - t0
    write_json_atomic(out / "baseline.json", results)
    (out / PLOTS).mkdir(exist_ok=True)
    plot_turn_on(results, out / PLOTS / "turn_on.png")
    plot_noise_scan(results, out / PLOTS / "noise_scan.png")
    md = study_markdown(results)
    write_text_atomic(out / "baseline.md", md)
    return md
