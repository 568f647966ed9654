"""The train stage: train a card (resuming from its checkpoint), evaluate it against the
standard algorithm, train its variants on the same events, and write the report."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from trigkit.core.card import ModelCard, load_card
from trigkit.core.errors import TrigkitError
from trigkit.core.io import write_text_atomic
from trigkit.core.paths import MODELS_DIR, PLOTS, model_dir
from trigkit.core.plots import plot_curves, plot_training_history
from trigkit.core.report import read_report, update_report
from trigkit.evaluate import evaluate_model
from trigkit.evaluate.offline import pt_bin_centres
from trigkit.learn.data import Split, input_codes, load_splits
from trigkit.learn.gan import sample
from trigkit.learn.models import count_parameters, weight_memory_bits
from trigkit.learn.train import Trainer, load_trained_model

from .report import write_markdown

#: Where the stages send their one-line messages (the CLI passes typer.echo).
Say = Callable[[str], None]

#: What ended a training run, as report.json ``training.stopped_by`` says it.
STOPPED_BY = {"early_stopping": "early_stopping", "completed": "epochs", "time_budget": "time"}
#: Metrics printed after an evaluation, when present.
HEADLINE_METRICS = (
    "accuracy", "auc", "eff_at_baseline_fake_rate", "eff_prompt_above_threshold",
    "eff_nonpointing", "fake_rate_hz", "sigma_core_cm", "mean_cm", "tail_frac_8cm",
    "bkg_rejection_at_sig_eff", "eff_at_fake_rate", "inv_jsd_at_50pct_bkg_eff")


def headline(name: str, result: dict) -> list[str]:
    """Two lines: the network's and the baseline's headline metrics."""
    def short(d: dict) -> str:
        return ", ".join(f"{k}={d[k]:.4g}" for k in HEADLINE_METRICS
                         if isinstance(d.get(k), int | float))
    return [f"{name} network : {short(result['metrics'])}",
            f"{name} baseline: {short(result['baseline'])}"]


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
        "weight_bits": card.quant.weight_bits,
        "weight_memory_bits": weight_memory_bits(model, card),
        "offline": card.data.input_format != "hits",
        "metrics": result["metrics"], "baseline": result["baseline"], "plots": plots,
    }, timings={"evaluate": time.perf_counter() - t0})
    write_markdown(out, card.description)
    return result


def with_generated(card: ModelCard, train: Split) -> Split:
    """The training split plus ``evaluation.generated_events`` images from the WGAN-GP model
    ``evaluation.generated_from``, labelled with the class that model was trained on."""
    gcard = load_card(card.evaluation.generated_from)
    if gcard.task != "generative" or len(gcard.data.train_on) != 1:
        raise TrigkitError(f"evaluation.generated_from {gcard.name} must be a WGAN-GP card "
                           "trained on one class (data.train_on: [CLASS])")
    cls = gcard.data.train_on[0]
    if cls not in card.data.classes:
        raise TrigkitError(f"{gcard.name} generates {cls!r} jets, not a class of {card.name}")
    n = card.evaluation.generated_events
    fake = sample(load_trained_model(gcard), n, seed=card.evaluation.seed)
    fake = input_codes(card, fake.reshape(n, *card.data.input_shape))
    x = np.concatenate([train.images(), fake.astype(train.images().dtype)])
    y = np.concatenate([train.target, np.full(n, card.data.classes.index(cls), np.int64)])
    extra = {k: np.concatenate([v, np.full(n, np.nan)]) for k, v in train.extra.items()}
    return Split("train", train.path, np.concatenate([train.index, np.full(n, -1)]), y, x,
                 extra, train.context)


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
    update_report(out, fields)
    return results


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


def card_for_data(card: ModelCard, data: Path, models_dir: Path = MODELS_DIR
                  ) -> tuple[ModelCard, Path | None]:
    """``card`` with ``data.source`` = ``data``, named NAME_STEM, and the path of
    models/NAME_STEM.yaml to write once the data are checked (None: that card exists already;
    a different card of that name is refused)."""
    if not data.is_file():
        raise TrigkitError(f"--data {data} not found; give a CSV, Parquet or HDF5 file")
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", data.stem).strip("_") or "data"
    name = f"{card.name}_{stem}"
    derived = card.with_overrides(name, {"data.source": str(data)}, keep_variants=True)
    path = models_dir / f"{name}.yaml"
    if path.is_file():
        if load_card(path).to_dict() != derived.to_dict():
            raise TrigkitError(f"{path} exists and differs from {card.name} trained on {data}; "
                               f"train it with --model {name}, or move it away")
        return derived, None
    return derived, path


def write_derived_card(card: ModelCard, path: Path, source: str, say: Say = print) -> None:
    """Save a card derived for ``--data`` (only after its data passed the checks)."""
    write_text_atomic(path, yaml.safe_dump(card.to_dict(), sort_keys=False))
    say(f"{source} on {card.data.source}: wrote the card {path}; later stages take "
        f"--model {card.name}")


def train_stage(card: ModelCard, *, fresh: bool = False, epochs: int | None = None,
                threads: int | None = None, data: Path | None = None, evaluate: bool = True,
                progress: bool = True, say: Say = print) -> dict:
    """The whole train stage of one card; returns report.json's ``training`` section and,
    when evaluated, the evaluation result (``evaluation``) and ``variants``."""
    derived_path, source = None, card.name
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
        write_derived_card(derived, derived_path, source, say)
    trainer = Trainer(card, progress=progress, splits=splits)
    t0 = time.perf_counter()
    result = trainer.fit(fresh=fresh, epochs=epochs)
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
    return outcome
