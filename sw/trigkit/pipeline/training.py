"""The train stage: train a card (resuming from its checkpoint), evaluate it against the
standard algorithm, train its variants on the same events, and write the report."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from trigkit.core.card import (
    ArchSpec,
    DataSpec,
    EvalSpec,
    HardwareSpec,
    ModelCard,
    QuantSpec,
    TrainSpec,
    load_card,
)
from trigkit.core.config import to_dict
from trigkit.core.errors import TrigkitError
from trigkit.core.io import write_text_atomic
from trigkit.core.paths import MODELS_DIR, PLOTS, model_dir
from trigkit.core.plots import plot_curves, plot_training_history
from trigkit.core.report import read_report, update_report
from trigkit.evaluate import evaluate_model
from trigkit.evaluate.offline import pt_bin_centres
from trigkit.evaluate.uncertainty import plot_spread_vs_size
from trigkit.learn.data import Split, load_splits
from trigkit.learn.models import count_parameters, weight_memory_bits, weight_tensors
from trigkit.learn.train import Trainer, load_trained_model
from trigkit.offline.data import table_classes
from trigkit.offline.tabular import columns_of

from .augmentation import augmentation_study, extended, generated_images
from .contamination import contamination_study
from .decorrelation import decorrelation_study
from .report import write_markdown
from .seeds import train_seeds

#: Where the stages send their one-line messages (the CLI passes typer.echo).
Say = Callable[[str], None]

#: What ended a training run, as report.json ``training.stopped_by`` says it.
STOPPED_BY = {"early_stopping": "early_stopping", "completed": "epochs", "time_budget": "time"}
#: Metrics printed after an evaluation, when present.
HEADLINE_METRICS = (
    "accuracy", "auc", "eff_at_baseline_fake_rate", "eff_prompt_above_threshold",
    "eff_nonpointing", "fake_rate_hz", "sigma_core_cm", "mean_cm", "tail_frac_8cm",
    "bkg_rejection_at_sig_eff", "eff_at_fake_rate", "inv_jsd_at_50pct_bkg_eff", "rms",
    "mean_log_density_sb")


def headline(name: str, result: dict) -> list[str]:
    """Two lines: the network's and the baseline's headline metrics."""
    def short(d: dict) -> str:
        return ", ".join(f"{k}={d[k]:.4g}" for k in HEADLINE_METRICS
                         if isinstance(d.get(k), int | float))
    return [f"{name} network : {short(result['metrics'])}",
            f"{name} baseline: {short(result['baseline'])}"]


def _layer_bits(card: ModelCard, model) -> list[int]:
    """Weight bits of every weighted layer (32 for float models)."""
    n = len(weight_tensors(model)) or 1
    if not card.quant.is_quantised:
        return [32] * n
    return [card.quant.layer_weights(i)[0] for i in range(n)]


def run_evaluation(card: ModelCard, progress: bool = False) -> dict:
    """Evaluate the best checkpoint of ``card`` and write report.json, report.md and plots."""
    out = model_dir(card.name)
    t0 = time.perf_counter()
    model = load_trained_model(card)
    splits = load_splits(card, progress=progress)
    result = evaluate_model(card, model, splits, out, progress=progress)
    plots = sorted(str(p.relative_to(out)) for p in (out / PLOTS).glob("*.png"))
    update_report(out, {
        "model": card.name, "task": card.task, "params": count_parameters(model),
        "weight_bits": max(_layer_bits(card, model)),
        "weight_bits_per_layer": _layer_bits(card, model),
        "weight_memory_bits": weight_memory_bits(model, card),
        "offline": card.data.input_format != "hits",
        "metrics": result["metrics"], "baseline": result["baseline"], "plots": plots,
    }, timings={"evaluate": time.perf_counter() - t0})
    write_markdown(out, card.description)
    return result


def with_generated(card: ModelCard, train: Split) -> Split:
    """The training split plus ``evaluation.generated_events`` images from the generative model
    ``evaluation.generated_from``, labelled with the class that model was trained on."""
    fake, label = generated_images(card, card.evaluation.generated_from,
                                   card.evaluation.generated_events, card.evaluation.seed)
    return extended(train, fake, label)


def train_variants(card: ModelCard, progress: bool = False, fresh: bool = False,
                   say: Say = print) -> dict:
    """Train and evaluate the card's ``evaluation.variants`` on the same events, into
    build/NAME/variants/VARIANT/; their metrics go into report.json ``variants``."""
    results = {}
    for vname, overrides in card.evaluation.variants.items():
        vcard = card.with_overrides(f"{card.name}_{vname}", overrides)
        vdir = model_dir(card.name) / "variants" / vname
        say(f"== {card.name}: variant {vname} ({overrides}) ==")
        splits = load_splits(vcard, progress=progress)
        if vcard.evaluation.generated_from:
            splits["train"] = with_generated(vcard, splits["train"])
        t0 = time.perf_counter()
        fit = Trainer(vcard, out_dir=vdir, progress=progress, splits=splits).fit(fresh=fresh)
        model = load_trained_model(vcard, out_dir=vdir)
        res = evaluate_model(vcard, model, splits, vdir, progress=progress)
        results[vname] = {"overrides": overrides, "metrics": res["metrics"],
                          "baseline": res["baseline"], "epochs": len(fit.history),
                          "train_events": len(splits["train"]),
                          "seconds": time.perf_counter() - t0}
        for line in headline(f"{card.name}/{vname}", res):
            say(line)
    out = model_dir(card.name)
    fields = {"variants": results}
    if results and all("eff_vs_pt" in r["metrics"] for r in results.values()):
        plots = read_report(out).get("plots", [])
        fields["plots"] = sorted({*plots, _plot_variant_efficiencies(card, results, out)})
    spread = _plot_spread_vs_training_size(card, results, out)
    if spread:
        fields["plots"] = sorted({*fields.get("plots", read_report(out).get("plots", [])),
                                  spread})
    update_report(out, fields)
    return results


def _plot_spread_vs_training_size(card: ModelCard, results: dict, out: Path) -> str | None:
    """Bayesian classifiers: the mean score spread of the model and of its variants versus
    their training events (None when fewer than two have one)."""
    runs = {"this model": read_report(out).get("metrics", {}).get("uncertainty", {})} | {
        name: r["metrics"].get("uncertainty", {}) for name, r in results.items()}
    runs = {k: v for k, v in runs.items() if "mean_spread" in v and "train_events" in v}
    if len(runs) < 2:
        return None
    path = out / PLOTS / "spread_vs_training_size.png"
    plot_spread_vs_size({k: v["train_events"] for k, v in runs.items()},
                        {k: v["mean_spread"] for k, v in runs.items()}, path, card.name)
    return str(path.relative_to(out))


def _plot_variant_efficiencies(card: ModelCard, results: dict, out: Path) -> str:
    """Efficiency at the fake rate versus pT of the model and its variants on one plot."""

    def curve(eff: dict) -> tuple:
        return pt_bin_centres(), np.array(list(eff.values()), dtype=float)

    main = read_report(out).get("metrics", {}).get("eff_vs_pt", {})
    curves = ({card.name: curve(main)} if main else {}) | {
        name: curve(r["metrics"]["eff_vs_pt"]) for name, r in results.items()}
    path = out / PLOTS / "eff_vs_pt_variants.png"
    plot_curves(curves, path, "pT [GeV]",
                f"efficiency at {100 * card.evaluation.fake_rate:g} % fake rate",
                title=f"{card.name} and its variants")
    return str(path.relative_to(out))


@dataclass(frozen=True)
class DataOptions:
    """How ``trigkit train --data FILE`` reads a user's file (see :func:`card_for_data`).

    ``classes``: the class names in label order (integer label k is the k-th); ``("auto",)``
    takes them from the file; ``binary`` takes them from the file and requires two (the first
    is the background). ``fill_nan``: the value of NaN features (standardised), else NaN is an
    error."""

    path: Path
    features: tuple[str, ...] = ()
    label: str | None = None
    classes: tuple[str, ...] = ()
    binary: bool = False
    name: str | None = None
    fill_nan: float | None = None


#: Card keys that only mean something for generated data; a card derived for a file resets
#: them (``seed`` stays for histograms, which are drawn from the file's events).
GENERATOR_KEYS = ("events", "sample", "sim", "generator")


def card_for_data(card: ModelCard, opts: DataOptions, models_dir: Path = MODELS_DIR
                  ) -> tuple[ModelCard, Path | None]:
    """``card`` reading ``opts.path`` (features, label column, classes and NaN policy as
    given), named NAME_STEM (or ``opts.name``), with a description of where it comes from; and
    the path of models/NAME.yaml to write once the data are checked (None: that card exists
    already; a different card of that name is refused)."""
    data = opts.path
    if not data.is_file():
        raise TrigkitError(f"--data {data} not found; give a CSV, Parquet, ROOT or HDF5 file")
    fmt = card.data.input_format
    if (opts.features or opts.label) and fmt != "table":
        raise TrigkitError(f"--features and --label choose table columns; {card.name} takes "
                           f"{fmt} inputs")
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", data.stem).strip("_") or "data"
    name = opts.name or f"{card.name}_{stem}"
    defaults = to_dict(DataSpec())
    overrides: dict = {"data.source": str(data), "data.format": fmt}
    overrides |= {f"data.{k}": defaults[k] for k in GENERATOR_KEYS}
    if opts.features:
        overrides |= {"data.features": list(opts.features),
                      "data.input_shape": [len(opts.features)]}
    if opts.label:
        overrides["data.label_column"] = opts.label
    if opts.fill_nan is not None:
        overrides["data.fill_nan"] = opts.fill_nan
    if fmt == "table":
        overrides |= _table_columns_only(card, columns_of(data))
    if fmt != "histograms":
        overrides["data.seed"] = defaults["seed"]
    classes = _classes(card, opts, fmt)
    if classes:
        overrides |= {"data.classes": list(classes), "evaluation.background": classes[0],
                      "data.class_map": {}, "data.train_on": []}
    described = (f"{card.name} trained on {data.name}"
                 + (f" (features {', '.join(opts.features)})" if opts.features else "")
                 + (f", classes {', '.join(classes)}" if classes else "")
                 + f"; derived by trigkit train --data from models/{card.name}.yaml.")
    derived = card.with_overrides(name, {**overrides, "description": described},
                                  keep_variants=True)
    path = models_dir / f"{name}.yaml"
    if path.is_file():
        if load_card(path).to_dict() != derived.to_dict():
            raise TrigkitError(f"{path} exists and differs from {card.name} trained on {data}; "
                               f"train it with --model {name}, or --name another, or move it "
                               "away")
        return derived, None
    return derived, path


def _table_columns_only(card: ModelCard, columns: list[str]) -> dict:
    """Overrides dropping what refers to columns the new table lacks: kept truth columns,
    row selections, and variants that select rows by such columns."""
    d = card.data
    variants = {k: v for k, v in card.evaluation.variants.items()
                if all(c in columns for c in v.get("data.where", {}))}
    return {"data.keep": [c for c in d.keep if c in columns],
            "data.where": {c: v for c, v in d.where.items() if c in columns},
            "evaluation.variants": variants}


def _classes(card: ModelCard, opts: DataOptions, fmt: str) -> tuple[str, ...]:
    if not opts.classes and not opts.binary:
        return ()
    if opts.classes and opts.binary:
        raise TrigkitError("give either --classes or --binary")
    if fmt != "table":
        raise TrigkitError(f"--classes and --binary name a table's classes; {card.name} takes "
                           f"{fmt} inputs, whose classes are fixed")
    if opts.classes and opts.classes != ("auto",):
        if len(set(opts.classes)) != len(opts.classes) or len(opts.classes) < 2:
            raise TrigkitError(f"--classes {','.join(opts.classes)} must name two or more "
                               "different classes")
        return opts.classes
    features = opts.features or card.data.features
    found = table_classes(opts.path, tuple(features), opts.label or card.data.label_column)
    if opts.binary and len(found) != 2:
        raise TrigkitError(f"--binary: {opts.path} holds {len(found)} classes "
                           f"({', '.join(found)}); name them with --classes")
    return found


def write_derived_card(card: ModelCard, path: Path, say: Say = print) -> None:
    """Save a card derived for ``--data`` (only after its data passed the checks), with only
    the keys that differ from their defaults."""
    defaults = {"data": DataSpec(), "architecture": ArchSpec(), "quant": QuantSpec(),
                "training": TrainSpec(), "evaluation": EvalSpec(), "hardware": HardwareSpec()}
    full = card.to_dict()
    out = {k: full[k] for k in ("name", "task", "description")}
    for section, spec in defaults.items():
        default = to_dict(spec)
        changed = {k: v for k, v in full[section].items() if v != default[k]}
        if changed:
            out[section] = changed
    write_text_atomic(path, yaml.safe_dump(out, sort_keys=False))
    say(f"wrote the card {path} ({card.description}); later stages take --model {card.name}")


def train_stage(card: ModelCard, *, fresh: bool = False, epochs: int | None = None,
                threads: int | None = None, data: DataOptions | None = None,
                evaluate: bool = True, progress: bool = True, say: Say = print) -> dict:
    """The whole train stage of one card; returns report.json's ``training`` section and,
    when evaluated, the evaluation result (``evaluation``) and ``variants``."""
    derived_path = None
    if data is not None:
        card, derived_path = card_for_data(card, data)
    derived = card
    if threads is not None:
        if threads < 1:
            raise TrigkitError(f"--threads = {threads} must be at least 1")
        card = card.with_overrides(card.name, {"training.threads": threads}, keep_variants=True)
    if epochs is not None and epochs < 1:
        raise TrigkitError(f"--epochs = {epochs} must be at least 1")
    splits = load_splits(card, progress=progress)  # checks data, shapes and targets first
    if derived_path is not None:
        write_derived_card(derived, derived_path, say)
    t0 = time.perf_counter()
    seeds = None
    if card.training.seeds > 1:
        result, seeds = train_seeds(card, splits, fresh=fresh, epochs=epochs, progress=progress)
    else:
        result = Trainer(card, progress=progress, splits=splits).fit(fresh=fresh, epochs=epochs)
    wall = time.perf_counter() - t0
    out = model_dir(card.name)
    if result.history:
        (out / PLOTS).mkdir(parents=True, exist_ok=True)
        plot_training_history(result.history, out / PLOTS / "loss.png")
    training = {"epochs": len(result.history), "best_epoch": result.best_epoch,
                "best_val_loss": result.best_val_loss, "stopped": result.stopped,
                "stopped_by": STOPPED_BY.get(result.stopped, result.stopped),
                "seconds": sum(h.get("seconds", 0.0) for h in result.history),
                "threads": card.training.threads}
    if seeds is not None:
        training["seeds"] = seeds
        training["seconds"] = wall
        say(f"{card.name}: seeds {seeds['seeds']}: test {seeds['test_metric']} "
            + ", ".join(f"{v:.4g}" for v in seeds["test"])
            + f" (mean {seeds['test_mean']:.4g}, std {seeds['test_std']:.2g}); shipped seed "
            f"{seeds['chosen']} (best {seeds['chosen_by']})")
    update_report(out, {"model": card.name, "task": card.task, "training": training},
                  timings={"train": training["seconds"]})
    say(f"{card.name}: trained {len(result.history)} epochs ({result.stopped}), best epoch "
        f"{result.best_epoch}, this run {wall:.1f} s wall")
    if training["stopped_by"] == "time":
        say(f"WARNING: {card.name} was stopped by its wall-clock safety limit "
            f"(training.max_minutes = {card.training.max_minutes:g}) after {len(result.history)} "
            "epochs: the model depends on this machine's speed; run the same command again to "
            "resume it to the card's epochs (report.json training.stopped_by = time)")
    outcome: dict = {"card": card, "training": training}
    if evaluate:
        outcome["evaluation"] = run_evaluation(card, progress)
        for line in headline(card.name, outcome["evaluation"]):
            say(line)
        if card.evaluation.variants:
            outcome["variants"] = train_variants(card, progress, fresh, say=say)
            write_markdown(out, card.description)
        if card.evaluation.contamination is not None:
            outcome["contamination"] = contamination_study(card, progress, fresh, say=say)
            write_markdown(out, card.description)
        if card.evaluation.decorrelation is not None:
            outcome["decorrelation"] = decorrelation_study(card, progress, fresh, say=say)
            write_markdown(out, card.description)
        if card.evaluation.augmentation is not None:
            outcome["augmentation"] = augmentation_study(card, progress, fresh, say=say)
            write_markdown(out, card.description)
    return outcome
