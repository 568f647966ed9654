"""Physics against firmware cost of the L0 cards: sw/docs/img/l0_tradeoff.png.

Reads the measured variants in sw/docs/l0_variants.csv (da4ml LUT estimates of the networks,
test metrics of single trainings) and, when present, the main job's reports
(build/<card>/report.json: Yosys LUTs, front end included). Usage (repository root):
    .venv/bin/python sw/tools/plot_l0_tradeoff.py
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ROOT / "sw" / "docs" / "l0_variants.csv"
OUT = ROOT / "sw" / "docs" / "img" / "l0_tradeoff.png"


def _main_job_points() -> dict[str, dict]:
    out = {}
    for name in ("l0_pointing_tnn", "l0_vertex_tnn", "l0_pointing_f32", "l0_vertex_f32"):
        path = ROOT / "build" / name / "report.json"
        if path.is_file():
            out[name] = json.loads(path.read_text())
    return out


def main() -> None:
    rows = list(csv.DictReader(VARIANTS.open()))
    main_job = _main_job_points()
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    panels = (("pointing", "value", "accuracy (test)"),
              ("pointing", "nonpointing_eff", "non-pointing eff. at the baseline's fake rate"),
              ("vertex", "value", "vertex core sigma [cm] (test)"))
    for ax, (model, column, label) in zip(axes, panels, strict=True):
        for r in rows:
            if r["model"] != model or not r["lut_da4ml"] or not r[column]:
                continue
            old = "image CNN" in r["variant"]
            ax.scatter(float(r["lut_da4ml"]), float(r[column]), marker="s" if old else "o",
                       color="grey" if old else "tab:blue", s=40)
        name = f"l0_{model}_tnn"
        if name in main_job and "synth" in main_job[name]:
            rep = main_job[name]
            key = "accuracy" if column == "value" and model == "pointing" else (
                "eff_nonpointing" if model == "pointing" else "sigma_core_cm")
            ax.scatter(rep["synth"]["lut"], rep["metrics"][key], marker="*", s=220,
                       color="tab:red", label=f"{name}, main job (Yosys, front end incl.)")
        f32 = f"l0_{model}_f32"
        if f32 in main_job:
            key = "accuracy" if model == "pointing" and column == "value" else (
                "eff_nonpointing" if model == "pointing" else "sigma_core_cm")
            ax.axhline(main_job[f32]["metrics"][key], color="tab:green", ls="--",
                       label=f"{f32} (float)")
        budget = 45000 if model == "pointing" else 40000
        ax.axvline(budget, color="k", ls=":", label=f"LUT target {budget:,}")
        ax.set_xscale("log")
        ax.set_xlabel("LUT (da4ml estimate of the network; star: Yosys)")
        ax.set_ylabel(label)
        ax.scatter([], [], marker="o", color="tab:blue", label="road / hit-feature variants")
        ax.scatter([], [], marker="s", color="grey", label="previous image CNNs")
        ax.legend(fontsize=7)
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(OUT)


if __name__ == "__main__":
    main()
