"""One trial of a co-design scan: the real stages on a derived card, and its record.

A trial trains the derived card (its own folder under ``build/scan_NAME/trials/``), exports it to
QONNX exactly as ``trigkit export`` does, traces the integer graph with da4ml exactly as
``trigkit rtl`` does (LUT estimate ``comb.cost``; pipeline latency from da4ml's pipelining at the
card's clock) and scores the validation split with the integer reference (what the firmware
computes). No cost model of its own: the numbers are those of the stages.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trigkit.core.card import ModelCard
from trigkit.core.errors import TrigkitError
from trigkit.core.io import write_json_atomic
from trigkit.core.paths import ONNX_NAME, VECTORS_NAME, YOSYS_LOG
from trigkit.firmware.export import export_qonnx, make_vectors, write_vectors
from trigkit.firmware.reference import ReferenceModel
from trigkit.firmware.rtl import (
    latency_cycles,
    pipeline,
    stage_delay_units,
    trace_reference,
    write_rtl,
)
from trigkit.firmware.synth import synth_yosys
from trigkit.learn.data import load_splits
from trigkit.learn.metrics import accuracy, regression_metrics
from trigkit.learn.train import Trainer, load_trained_model

#: Objectives a scan can optimise, and their direction.
OBJECTIVES = {"accuracy": "max", "sigma_core_cm": "min", "median_abs_cm": "min",
              "rms_cm": "min", "tail_frac_8cm": "min"}
#: The objective of a task unless ``--objective`` says otherwise.
DEFAULT_OBJECTIVE = {"classification": "accuracy", "regression": "sigma_core_cm"}
#: Where a running trial notes its stage.
STAGE_FILE = "stage.txt"
#: Test vectors the Verilog of a synthesised trial is checked on before Yosys runs.
SYNTH_VECTORS = 2000


def trial_id(overrides: dict[str, Any]) -> str:
    """A stable name of the trial's card values (the same values give the same trial)."""
    return hashlib.sha256(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:10]


def validation_metrics(card: ModelCard, reference: ReferenceModel, splits: dict) -> dict:
    """The card's figures of merit on the validation split, from the integer reference."""
    outs, targets = [], []
    for x, y in splits["val"].batches(4096):
        outs.append(reference.predict(x))
        targets.append(np.asarray(y))
    y_out, y_true = np.concatenate(outs), np.concatenate(targets)
    if card.task == "classification":
        return {"accuracy": accuracy(y_true, y_out.argmax(axis=1))}
    if card.task == "regression":
        m = regression_metrics(y_out[:, 0] * card.data.target_scale, y_true)
        return {k: m[k] for k in OBJECTIVES if k in m}
    raise TrigkitError(f"a scan needs a classifier or a regressor; {card.name} is {card.task}")


def _stage(out_dir: Path, name: str) -> None:
    """Note the stage a trial is in (named when the safety limit stops it)."""
    (out_dir / STAGE_FILE).write_text(name)


def run_trial(card: ModelCard, out_dir: Path, threads: int = 1) -> dict[str, Any]:
    """Train, export, trace and score ``card`` in ``out_dir``; the trial's figures."""
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    _stage(out_dir, "train")
    splits = load_splits(card)
    result = Trainer(card, out_dir=out_dir, progress=False, splits=splits,
                     verbose=False).fit(fresh=True)
    model = load_trained_model(card, out_dir=out_dir)
    _stage(out_dir, "export")
    onnx_path = export_qonnx(card, model, out_dir / ONNX_NAME)
    reference = ReferenceModel(onnx_path)
    _stage(out_dir, "trace (da4ml)")
    comb, _ = trace_reference(reference, card.input_bits, card.input_signed,
                              card.hardware.solver_options)
    cycles = latency_cycles(pipeline(comb, stage_delay_units(card.hardware.clock_ns)))
    _stage(out_dir, "validation")
    weights = reference.weights_nonzero()
    nonzero, total = weights["nonzero"], weights["total"]
    return {"metrics": validation_metrics(card, reference, splits), "lut": float(comb.cost),
            "latency_cycles": cycles, "latency_ns": cycles * card.hardware.clock_ns,
            "params": total, "weight_nonzero": nonzero, "epochs": len(result.history),
            "stopped": result.stopped, "wall_s": time.perf_counter() - t0}


class TrialTimeout(TrigkitError):
    """A trial stopped by its wall-clock safety limit."""


def _run_limited(card: ModelCard, out_dir: Path, threads: int,
                 limit_s: float | None) -> dict[str, Any]:
    if limit_s is None:
        return run_trial(card, out_dir, threads)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        job = pool.apply_async(run_trial, (card, out_dir, threads))
        try:
            return job.get(timeout=limit_s)
        except multiprocessing.TimeoutError:
            stage = (out_dir / STAGE_FILE).read_text() if (out_dir / STAGE_FILE).is_file() else "?"
            raise TrialTimeout(f"stopped by the per-trial safety limit of {limit_s:g} s in stage "
                               f"{stage} (--trial-minutes)") from None


def record_trial(base: ModelCard, overrides: dict[str, Any], budget_keys: list[str],
                 objective: str, trials_dir: Path, run_id: str,
                 threads: int = 1, limit_s: float | None = None) -> dict[str, Any]:
    """Run one trial and write its record (``trials/<card hash>-<run id>/record.json``),
    failed or not. Every run is its own record, even when a searcher proposes the same card
    twice. With ``limit_s`` the trial runs in a child process that is stopped after that many
    seconds (a safety stop, recorded as such with the stage it was in)."""
    card_hash = trial_id(overrides)
    tid = f"{card_hash}-{run_id}"
    out_dir = trials_dir / tid
    out_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "trial": tid, "card_hash": card_hash,
        "card": {k: v for k, v in overrides.items() if k not in budget_keys},
        "budget": {k: overrides[k] for k in budget_keys}, "status": "error",
        "objective": None, "lut": None, "latency_cycles": None, "latency_ns": None,
        "error": "", "started": time.time()}
    t0 = time.perf_counter()
    try:
        card = base.with_overrides(f"{base.name}_scan_{card_hash}", overrides)
        figures = _run_limited(card, out_dir, threads, limit_s)
        if objective not in figures["metrics"]:
            raise TrigkitError(f"objective {objective} is not a figure of {card.task} models; "
                               f"choose one of {', '.join(figures['metrics'])}")
        record.update(figures, status="ok", objective=figures["metrics"][objective])
    except Exception as err:  # noqa: BLE001 - any failure is recorded; the scan goes on
        record.update(error=f"{type(err).__name__}: {err}", wall_s=time.perf_counter() - t0,
                      traceback=traceback.format_exc(limit=6))
    write_json_atomic(out_dir / "record.json", record)
    return record


def read_records(trials_dir: Path) -> list[dict[str, Any]]:
    """Every finished trial's record (ok or error), oldest first."""
    out = []
    for path in sorted(trials_dir.glob("*/record.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue  # a trial interrupted while writing: it is run again
    return sorted(out, key=lambda r: r.get("started", 0.0))


def synthesise_trial(base: ModelCard, record: dict[str, Any], trials_dir: Path,
                     n_vectors: int = SYNTH_VECTORS) -> dict[str, Any]:
    """Yosys figures of a finished trial, as ``trigkit rtl`` and ``synth`` make them: Verilog
    written from its QONNX graph and checked on ``n_vectors`` test vectors (0 mismatches or an
    error) before synthesis. Stored in the record (``yosys``); done once per trial."""
    if "yosys" in record:
        return record
    out_dir = trials_dir / record["trial"]
    overrides = {**record["budget"], **record["card"]}
    card = base.with_overrides(f"{base.name}_scan_{record['card_hash']}", overrides)
    reference = ReferenceModel(out_dir / ONNX_NAME)
    x = make_vectors(card, n_vectors, seed=4242)
    y_int, y_exp = reference.predict_int(x)
    write_vectors(out_dir / VECTORS_NAME, x, y_int, y_exp)
    info = write_rtl(card.name, out_dir / ONNX_NAME, out_dir / "hw",
                     clock_ns=card.hardware.clock_ns,
                     latency_cutoff_ns=card.hardware.latency_cutoff_ns,
                     vectors_path=out_dir / VECTORS_NAME, input_bits=card.input_bits,
                     input_signed=card.input_signed,
                     solver_options=card.hardware.solver_options)
    if info["trace_vs_ref"]:
        raise TrigkitError(f"trial {record['trial']}: the traced RTL differs from the reference "
                           f"on {info['trace_vs_ref']} vectors")
    y = synth_yosys(out_dir / "hw", log_path=out_dir / YOSYS_LOG)
    record = {**record, "yosys": {k: y[k] for k in ("lut", "ff", "dsp", "bram", "logic_depth",
                                                     "seconds")},
              "rtl_vectors": info["trace_vectors"], "rtl_latency_cycles": info["latency_cycles"]}
    write_json_atomic(out_dir / "record.json", record)
    return record
