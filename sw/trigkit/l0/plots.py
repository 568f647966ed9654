"""Plots of the L0 domain: event displays of hit images, coincidence-trigger turn-on curves
and noise scans. Every function writes one PNG atomically and returns its path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trigkit.core.plots import plt, save_figure
from trigkit.l0.detector import LABEL_NAMES, DetectorConfig

MODE_COLOURS = {"low": "tab:blue", "high": "tab:red", "phase2": "tab:green"}


def event_display(
    events: dict[str, np.ndarray], det: DetectorConfig, path: str | Path,
    indices: list[int] | None = None, title: str = "",
) -> Path:
    """Hit images of several events, one panel each, with truth crossings overlaid."""
    hits = events["hits"]
    idx = list(range(min(8, len(hits)))) if indices is None else list(indices)
    fig, axes = plt.subplots(len(idx), 1, figsize=(12, 1.15 * len(idx) + 0.8), squeeze=False)
    for ax, i in zip(axes[:, 0], idx, strict=True):
        ax.imshow(hits[i], aspect="auto", cmap="Greys", interpolation="nearest", vmin=0, vmax=1,
                  extent=(-0.5, det.n_eta_bins - 0.5, det.n_layers - 0.5, -0.5))
        if "mu_x" in events:
            for m in range(events["mu_x"].shape[1]):
                x = events["mu_x"][i, m]
                ok = np.isfinite(x)
                if ok.any():
                    ax.plot(x[ok] - 0.5, np.arange(det.n_layers)[ok], "o", ms=4, mfc="none",
                            color="tab:red" if m == 0 else "tab:orange", lw=0.8)
        label = LABEL_NAMES.get(int(events["label"][i]), "?") if "label" in events else ""
        info = [f"#{i} {label}"]
        for key, fmt in (("pt", "pT={:.1f} GeV"), ("q", "q={:+.0f}"), ("vtx_r", "R={:.0f} cm")):
            has_muon = "pt" in events and np.isfinite(events["pt"][i])
            if key in events and has_muon and not (key == "q" and label == "darkphoton"):
                info.append(fmt.format(float(events[key][i])))
        ax.set_yticks(range(det.n_layers), det.layer_names, fontsize=6)
        ax.text(1.002, 0.5, "\n".join(info), transform=ax.transAxes, fontsize=7, va="center")
        ax.tick_params(axis="x", labelsize=7)
    axes[-1, 0].set_xlabel("eta column")
    fig.suptitle(title or "RPC eta-strip hits (black) and true crossings (circles)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    return save_figure(fig, path, dpi=110)


def plot_turn_on(results: dict[str, Any], path: str | Path) -> Path:
    """Efficiency versus pT for each calibrated trigger mode."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, res in results["modes"].items():
        t = res["turn_on"]
        centre = 0.5 * (np.asarray(t["pt_lo"]) + np.asarray(t["pt_hi"]))
        half = 0.5 * (np.asarray(t["pt_hi"]) - np.asarray(t["pt_lo"]))
        ax.errorbar(centre, t["eff"], xerr=half, yerr=[t["err_lo"], t["err_hi"]], fmt="o", ms=3,
                    color=MODE_COLOURS.get(mode), label=f"{mode}-pT roads, threshold "
                    f"{res['threshold_gev']:g} GeV")
        ax.axvline(res["threshold_gev"], color=MODE_COLOURS.get(mode), ls=":", lw=0.8)
    ax.set_xlabel("muon pT [GeV]")
    ax.set_ylabel("trigger efficiency")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Coincidence-window trigger, prompt muons (noise "
                 f"{results['noise_rate_per_strip']:g} per strip per BC)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_noise_scan(results: dict[str, Any], path: str | Path) -> Path:
    """Fake-trigger rate per sector on noise-only events versus strip noise probability."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, res in results["modes"].items():
        scan = res["noise_scan"]
        x = np.asarray([s["noise_rate"] for s in scan])
        y = np.asarray([s["rate_hz"] for s in scan])
        ul = np.asarray([s["rate_hz_ul95"] for s in scan])
        lo = np.asarray([s["rate_hz"] - s["rate_hz_lo"] for s in scan])
        hi = np.asarray([s["rate_hz_hi"] - s["rate_hz"] for s in scan])
        fired = y > 0
        c = MODE_COLOURS.get(mode)
        ax.errorbar(x[fired], y[fired], yerr=[lo[fired], hi[fired]], fmt="o-", ms=4, color=c,
                    label=f"{mode}-pT")
        ax.plot(x[~fired], ul[~fired], "v", color=c, mfc="none",
                label=f"{mode}-pT: none fired, 95% CL upper limit" if (~fired).any() else None)
    ax.set_yscale("log")
    ax.set_xlabel("uncorrelated noise probability per strip per bunch crossing")
    ax.set_ylabel("fake trigger rate per sector [Hz]")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title("Noise-only events, rate = fired fraction x 40 MHz", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
