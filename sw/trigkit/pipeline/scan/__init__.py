"""Co-design scan (``trigkit scan``): the Pareto front of a card's metric against firmware cost.

Trials derive cards from SPACE.yaml (:mod:`.space`), each runs the real stages (:mod:`.trial`),
Ray Tune with its Optuna searcher picks them (:mod:`.search`), and the table, front, plot,
report and Pareto cards are written to ``build/scan_NAME/`` and ``models/`` (:mod:`.results`).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from trigkit.core.card import ModelCard
from trigkit.core.errors import TrigkitError
from trigkit.core.io import write_json_atomic, write_text_atomic
from trigkit.core.paths import BEST_CHECKPOINT, model_dir

from .results import (
    feasible,
    pareto_front,
    plot_front,
    table_rows,
    throughput,
    write_pareto_cards,
    write_table,
)
from .search import ScanOptions, objective_of, run_search, scan_dir
from .space import SearchSpace, read_space
from .trial import synthesise_trial, trial_id

__all__ = ["ScanOptions", "SearchSpace", "read_space", "scan_stage", "scan_dir"]


def _check_ready(card: ModelCard, space: SearchSpace, out: Path, opts: ScanOptions,
                 fresh: bool) -> None:
    if not card.quant.is_quantised:
        raise TrigkitError(f"{card.name} is a float model: a scan measures firmware cost, so "
                           "it needs a quantised card (quant.weights: ternary)")
    if card.task not in ("classification", "regression"):
        raise TrigkitError(f"a scan needs a classifier or a regressor; {card.name} is a "
                           f"{card.task} model")
    distill = card.with_overrides(card.name, space.budget).training.distill  # as trials run
    teacher = distill.teacher if distill else ""
    if teacher and not (model_dir(teacher) / BEST_CHECKPOINT).is_file():
        raise TrigkitError(f"{card.name} distils from {teacher}, which is not trained: run "
                           f"`make train MODEL={teacher}` first")
    if opts.trials < 1:
        raise TrigkitError(f"--trials = {opts.trials} must be at least 1")
    if (out / "trials").is_dir() and any((out / "trials").iterdir()):
        if fresh:
            shutil.rmtree(out)
        elif not opts.resume:
            raise TrigkitError(f"{out} holds an earlier scan: pass --resume to continue it "
                               "(finished trials are kept) or --fresh to start again")


def scan_stage(card: ModelCard, space_path: Path, opts: ScanOptions, fresh: bool = False,
               say=print) -> dict[str, Any]:
    """Run (or resume) the scan of ``card`` over SPACE.yaml and write its results."""
    space = read_space(space_path, card)  # refused before anything starts
    objective, direction = objective_of(card, opts.objective)
    out = Path(opts.out) if opts.out is not None else scan_dir(card.name)
    _check_ready(card, space, out, opts, fresh)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    records = run_search(card, space, opts, out)
    max_latency = opts.max_latency_ns or card.hardware.latency_cutoff_ns
    front = pareto_front(feasible(records, opts.max_lut, max_latency), direction)
    if opts.synth_top > 0:
        front = _synthesise_top(card, front, opts.synth_top, out / "trials", direction, say)
    keys = [p.key for p in space.params]
    csv_path, _ = write_table(table_rows(records, keys), out)
    start = space.card_values(card)
    current_id = trial_id(space.overrides(start)) if start is not None else None
    current = next((r for r in records if r.get("card_hash") == current_id), None)
    plot = plot_front(records, front, objective, out / "pareto.png", opts.max_lut, current)
    cards = write_pareto_cards(card, front, objective) if opts.write_cards else []
    summary = {"model": card.name, "objective": objective, "direction": direction,
               "trials": len(records), "ok": sum(r["status"] == "ok" for r in records),
               "budget": space.budget, "max_lut": opts.max_lut, "max_latency_ns": max_latency,
               "threads_per_trial": opts.threads, "concurrent": opts.concurrent,
               "this_run_s": time.perf_counter() - t0, **throughput(records),
               "current": current, "front": front, "cards": [str(p) for p in cards]}
    write_json_atomic(out / "scan.json", summary)
    write_text_atomic(out / "report.md", scan_markdown(summary, keys, csv_path, plot))
    say(f"scan {card.name}: {summary['ok']} of {len(records)} trials ran; front of "
        f"{len(front)} point(s) -> {out}/report.md, cards {', '.join(map(str, cards)) or 'none'}")
    return summary


def _synthesise_top(card: ModelCard, front: list[dict[str, Any]], k: int, trials_dir: Path,
                    direction: str, say) -> list[dict[str, Any]]:
    """Yosys figures of the ``k`` front points with the best objective (cheapest kept)."""
    best = sorted(front, key=lambda r: r["objective"], reverse=direction == "max")[:k]
    done = {}
    for r in best:
        say(f"scan: Verilog, check and Yosys of trial {r['trial']} ({r['lut']:,.0f} LUT da4ml)")
        done[r["trial"]] = synthesise_trial(card, r, trials_dir)
    return [done.get(r["trial"], r) for r in front]


def scan_markdown(summary: dict[str, Any], keys: list[str], csv_path: Path, plot: Path) -> str:
    """report.md of a scan."""
    obj = summary["objective"]
    lines = [f"# Co-design scan of {summary['model']}", "",
             f"{summary['trials']} trials ({summary['ok']} ran to the end), objective {obj} "
             f"({summary['direction']}imised, validation split, integer reference) against the "
             f"da4ml LUT estimate; latency limit {summary['max_latency_ns']:g} ns"
             + (f", LUT budget {summary['max_lut']:,.0f}" if summary["max_lut"] else "") + ".",
             f"Per-trial budget: `{json.dumps(summary['budget'])}`, "
             f"{summary['threads_per_trial']} thread(s) per trial.", ""]
    if "trials_per_hour" in summary:
        lines += [f"Throughput: {summary['trials_per_hour']:.1f} trials/hour over "
                  f"{summary['span_s']:.0f} s (median trial {summary['median_trial_s']:.0f} s).",
                  ""]
    lines += [f"![Pareto front]({plot.name})", "", "## Pareto front", "",
              f"| trial | {obj} | LUT (da4ml) | LUT (Yosys) | latency [ns] | "
              + " | ".join(keys) + " |", "|---|---|---|---|---|" + "---|" * len(keys)]
    for r in summary["front"]:
        yosys = f"{r['yosys']['lut']:,}" if "yosys" in r else "-"
        lines.append(f"| {r['trial']} | {r['objective']:.4f} | {r['lut']:,.0f} | {yosys} | "
                     f"{r['latency_ns']:g} | "
                     + " | ".join(f"`{json.dumps(r['card'].get(k))}`" for k in keys) + " |")
    cur = summary.get("current")
    if cur and cur.get("status") == "ok":
        lines += ["", f"Shipped card with the same budget (trial {cur['trial']}): {obj} "
                  f"{cur['objective']:.4f}, {cur['lut']:,.0f} LUT, {cur['latency_ns']:g} ns."]
    lines += ["", f"Every trial: `{csv_path.name}` (and `trials.parquet`). Pareto cards: "
              + (", ".join(f"`{c}`" for c in summary["cards"]) or "none") + "."]
    return "\n".join(lines) + "\n"
