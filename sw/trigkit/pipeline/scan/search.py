"""The co-design scan on Ray Tune with its Optuna searcher (multi-objective: the card's metric
against the da4ml LUT estimate), local by default or on an existing Ray cluster.

Each trial is a Ray task with ``threads`` CPUs; Optuna's study lives in a journal file in the
scan folder, so an interrupted scan resumes (``resume``) with what it learned, and the trial
records (JSON, one per trial) say which trials are done: they are not run again.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from trigkit.core.card import ModelCard
from trigkit.core.errors import TrigkitError
from trigkit.core.paths import BUILD, model_dir

from .space import SearchSpace, tune_space
from .trial import DEFAULT_OBJECTIVE, OBJECTIVES, read_records, record_trial

#: Seconds to wait for a Ray cluster's address to answer before giving up.
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ScanOptions:
    """How to run a scan (the command's options)."""

    trials: int = 24
    objective: str = ""
    max_lut: float | None = None
    max_latency_ns: float | None = None
    address: str | None = None
    resume: bool = False
    concurrent: int | None = None
    threads: int = 1
    seed: int = 0
    progress: bool = True
    out: Path | None = None
    write_cards: bool = True
    synth_top: int = 0
    trial_minutes: float | None = 30.0


def scan_dir(name: str, build: Path = BUILD) -> Path:
    """``build/scan_NAME``: everything a scan of card NAME writes."""
    return model_dir(f"scan_{name}", build)


def objective_of(card: ModelCard, objective: str) -> tuple[str, str]:
    """(objective, "max" or "min") for ``card``; unknown names are refused."""
    name = objective or DEFAULT_OBJECTIVE.get(card.task, "")
    if name not in OBJECTIVES:
        raise TrigkitError(f"--objective {name or '(none)'}: choose one of "
                           f"{', '.join(OBJECTIVES)}")
    return name, OBJECTIVES[name]


def check_address(address: str) -> None:
    """Fail in seconds, with the fix, when a Ray cluster address does not answer."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise TrigkitError(f"--address {address}: give HOST:PORT of the Ray head (e.g. "
                           "10.0.0.1:6379) or 'auto' on a node of the cluster")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise TrigkitError(
            f"--address {address}: no Ray head answers there ({err}). Start one with "
            "`ray start --head --port=6379` and join workers with `ray start --address="
            "HEAD:6379`, or leave out --address to run on this machine") from None


def _start_ray(opts: ScanOptions) -> int:
    """Start (or join) Ray; returns the CPUs it has."""
    import ray

    if opts.address:
        check_address(opts.address)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic reporter obeys verbose=0
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "logging_level": logging.ERROR}
        if opts.address:
            ray.init(address=opts.address, **kwargs)
        else:
            ray.init(num_cpus=os.cpu_count() or 1, **kwargs)
    return int(ray.cluster_resources().get("CPU", 1))


def _trainable(base: ModelCard, space: SearchSpace, objective: str, trials_dir: Path,
               root: Path, threads: int, limit_s: float | None):
    """The function Ray runs per trial (in the repository root, whatever Ray's own folder)."""
    budget_keys = list(space.budget)

    def trial(config: dict[str, Any]) -> dict[str, Any]:
        from ray import tune

        os.chdir(root)
        record = record_trial(base, space.overrides(config), budget_keys, objective,
                              trials_dir, tune.get_context().get_trial_id(), threads, limit_s)
        if record["status"] != "ok":
            raise TrigkitError(f"trial {record['trial']} failed: {record['error']}")
        return {"objective": record["objective"], "lut": record["lut"],
                "latency_ns": record["latency_ns"], "trial_name": record["trial"]}

    return trial


def _progress_callback(bar):
    from ray.tune import Callback

    class Progress(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            bar.update(1)

        def on_trial_error(self, iteration, trials, trial, **info):
            bar.update(1)

    return Progress()


def run_search(base: ModelCard, space: SearchSpace, opts: ScanOptions,
               out: Path) -> list[dict[str, Any]]:
    """Run the trials still to do (``opts.trials`` minus the recorded ones); all records."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    objective, direction = objective_of(base, opts.objective)
    trials_dir = out / "trials"
    done = read_records(trials_dir)
    todo = opts.trials - len(done)
    if todo <= 0:
        return done
    cpus = _start_ray(opts)
    concurrent = opts.concurrent or max(1, cpus // opts.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(out / "optuna.journal")))
    start = space.card_values(base)
    searcher = OptunaSearch(
        metric=["objective", "lut"], mode=[direction, "min"],
        # a resumed scan draws on from a new seed: the same seed would repeat the proposals
        # of the first run (its random start-up trials) instead of new ones
        sampler=optuna.samplers.TPESampler(seed=opts.seed + len(done), multivariate=True),
        storage=storage, study_name=f"scan_{base.name}",
        points_to_evaluate=[start] if start is not None and not done else None)
    trainable = tune.with_resources(
        _trainable(base, space, objective, trials_dir.resolve(), Path.cwd().resolve(),
                   opts.threads, opts.trial_minutes * 60 if opts.trial_minutes else None),
        {"cpu": opts.threads})
    with tqdm(total=todo, desc=f"scan {base.name}", unit="trial",
              disable=not opts.progress) as bar:
        tuner = tune.Tuner(
            trainable, param_space=tune_space(space),
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=todo,
                                        max_concurrent_trials=concurrent),
            run_config=tune.RunConfig(
                name=f"run_{int(time.time())}", storage_path=str((out / "ray").resolve()),
                verbose=0, callbacks=[_progress_callback(bar)],
                failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)))
        tuner.fit()
    return read_records(trials_dir)
