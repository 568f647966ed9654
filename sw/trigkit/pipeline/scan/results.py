"""What a scan leaves behind: the trials table, the Pareto front, its plot, report.md and the
Pareto cards (``models/NAME_pareto_K.yaml``)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from trigkit.core.card import ModelCard, load_card
from trigkit.core.config import ConfigError
from trigkit.core.errors import TrigkitError
from trigkit.core.io import atomic_path, save_figure_atomic, write_text_atomic
from trigkit.core.paths import MODELS_DIR
from trigkit.pipeline.training import write_derived_card

#: Marks a card written by a scan (such a card may be replaced by the next scan).
SCAN_MARK = "Pareto point of trigkit scan"
TABLE_COLUMNS = ("trial", "status", "objective", "lut", "latency_cycles", "latency_ns",
                 "params", "weight_nonzero", "epochs", "wall_s")


def table_rows(records: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """One flat row per trial: the figures, every scanned card value (JSON), the error."""
    rows = []
    for r in records:
        row = {c: r.get(c) for c in TABLE_COLUMNS}
        row |= {k: json.dumps(r.get("card", {}).get(k)) for k in keys}
        row["error"] = r.get("error", "")
        rows.append(row)
    return rows


def write_table(rows: list[dict[str, Any]], out: Path) -> tuple[Path, Path]:
    """``trials.csv`` and ``trials.parquet`` (atomic)."""
    columns = list(rows[0]) if rows else list(TABLE_COLUMNS)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    csv_path = write_text_atomic(out / "trials.csv", text.getvalue())
    arrays = {c: [row.get(c) for row in rows] for c in columns}
    table = pa.table({c: pa.array([None if v is None else str(v) for v in vals])
                      if c not in TABLE_COLUMNS[2:] else pa.array(vals, pa.float64())
                      for c, vals in arrays.items()})
    with atomic_path(out / "trials.parquet") as tmp:
        pq.write_table(table, tmp)
    return csv_path, out / "trials.parquet"


def feasible(records: list[dict[str, Any]], max_lut: float | None,
             max_latency_ns: float | None) -> list[dict[str, Any]]:
    """Trials that ran and keep the LUT and latency limits."""
    return [r for r in records if r.get("status") == "ok"
            and (max_lut is None or r["lut"] <= max_lut)
            and (max_latency_ns is None or r["latency_ns"] <= max_latency_ns)]


def pareto_front(records: list[dict[str, Any]], direction: str) -> list[dict[str, Any]]:
    """Trials no other trial beats in both objective and LUT, cheapest first."""
    sign = 1.0 if direction == "max" else -1.0
    front: list[dict[str, Any]] = []
    for r in sorted(records, key=lambda r: (r["lut"], -sign * r["objective"])):
        if not front or sign * r["objective"] > sign * front[-1]["objective"]:
            front.append(r)
    return front


def plot_front(records: list[dict[str, Any]], front: list[dict[str, Any]], objective: str,
               path: Path, max_lut: float | None, current: dict[str, Any] | None) -> Path:
    """Objective vs LUT of every trial (colour: latency), the front, the card and the budget."""
    import matplotlib.pyplot as plt

    ok = [r for r in records if r.get("status") == "ok"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if ok:
        sc = ax.scatter([r["lut"] for r in ok], [r["objective"] for r in ok],
                        c=[r["latency_ns"] for r in ok], cmap="viridis", s=30, zorder=2)
        fig.colorbar(sc, ax=ax, label="latency [ns]")
    if front:
        ax.step([r["lut"] for r in front], [r["objective"] for r in front], where="post",
                color="C3", lw=1.5, label="Pareto front", zorder=1)
    if current is not None and current.get("status") == "ok":
        ax.scatter([current["lut"]], [current["objective"]], marker="*", s=250,
                   facecolor="none", edgecolor="k", label="shipped card (same budget)", zorder=3)
    if max_lut is not None:
        ax.axvline(max_lut, color="grey", ls="--", label=f"LUT budget {max_lut:,.0f}")
    ax.set_xlabel("LUT (da4ml estimate)")
    ax.set_ylabel(f"{objective} (validation, integer reference)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure_atomic(fig, path)


def _replaceable(path: Path) -> bool:
    if not path.is_file():
        return True
    try:
        return SCAN_MARK in load_card(path, path.parent).description
    except (ConfigError, TrigkitError):
        return False


def write_pareto_cards(base: ModelCard, front: list[dict[str, Any]], objective: str,
                       models_dir: Path = MODELS_DIR) -> list[Path]:
    """``models/NAME_pareto_K.yaml`` for each front point (cheapest first), full training
    settings of the base card; a card not written by a scan is never replaced."""
    paths = []
    for k, r in enumerate(front, 1):
        path = models_dir / f"{base.name}_pareto_{k}.yaml"
        if not _replaceable(path):
            raise TrigkitError(f"{path} exists and was not written by a scan; move it away "
                               "to let the scan write its Pareto cards")
        card = base.with_overrides(path.stem, {**r["card"], "description": (
            f"{SCAN_MARK} of {base.name} (trial {r['trial']}): {objective} "
            f"{r['objective']:.4g} on validation with the scan's budget {json.dumps(r['budget'])}"
            f", {r['lut']:,.0f} LUT (da4ml), {r['latency_ns']:g} ns. Trained here with the "
            f"full settings of {base.name}. Changed: {json.dumps(r['card'])}")})
        write_derived_card(card, path, say=lambda _line: None)
        paths.append(path)
    return paths


def throughput(records: list[dict[str, Any]]) -> dict[str, float]:
    """Trials per hour over the scan's own span (first start to last end) and the median
    trial time."""
    ends = [r["started"] + r.get("wall_s", 0.0) for r in records if "started" in r]
    starts = [r["started"] for r in records if "started" in r]
    if not starts:
        return {}
    span = max(ends) - min(starts)
    walls = [r.get("wall_s", 0.0) for r in records]
    return {"span_s": span, "trials_per_hour": len(records) * 3600.0 / max(span, 1e-9),
            "median_trial_s": float(np.median(walls))}
