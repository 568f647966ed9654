"""Model cards: one YAML file per model (``models/<name>.yaml``) carrying its whole configuration.

A card has the sections ``data``, ``architecture``, ``quant``, ``training``, ``evaluation`` and
``hardware``; every stage reads what it needs from the card and nothing else. Unknown keys are
errors that list the allowed ones.

The same card format serves the L0 trigger models (RPC hit images from ``trigkit simulate``) and
the offline models: calorimeter jet images (``source: jets``), tabular event features
(``source: monojet``, ``electrons`` or a CSV/Parquet/HDF5 file) and pseudo-experiment histograms
(``source: monojet_hist``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import registry
from .config import apply_overrides, from_dict, load_yaml, require_range, to_dict
from .errors import ConfigError, TrigkitError
from .network_spec import ArchSpec, QuantSpec
from .paths import MODELS_DIR
from .study_spec import AugmentationSpec, ContaminationSpec, DecorrelationSpec, HuntSpec

#: An FPGA part name (e.g. ``xcvu13p-flga2577-2-e``): it goes into vendor Tcl scripts, so only
#: letters, digits and dashes are accepted.
PART_PATTERN = re.compile(r"[a-z][a-z0-9]{2,31}(-[a-z0-9]{1,16}){0,5}")
#: Default models built by ``make train`` (in dependency order: teachers first).
#: Architecture kinds of ``task: generative``.
GENERATIVE_KINDS = ("wgan", "pixel_wgan")
DEFAULT_MODELS = ("l0_pointing_f32", "l0_pointing_tnn", "l0_vertex_f32", "l0_vertex_tnn")


def code_range(bits: int, signed: bool = False) -> tuple[int, int]:
    """(lowest, highest) ``bits``-bit integer code, unsigned or two's complement."""
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


@dataclass(frozen=True)
class HistSpec:
    """Pseudo-experiment histograms (pT x eta) built from ``r`` events each (monojet_hist).

    Attributes:
        r: background events per histogram.
        s_over_sqrt_b: signal events added to signal histograms, in units of sqrt(r).
        sets: histograms per class and split (train; validation and test get a share of it).
        signals: signal hypotheses (empty: all of the generator's models).
        mode: ``binary`` (SM vs SM + any signal) or ``multiclass`` (SM, SM + model k).
        scan_s_over_sqrt_b: S/sqrt(B) values of the evaluation scan (AUC vs S/sqrt(B)).
        scan_r: background sizes of the scan (invariance with B at fixed S/sqrt(B)).
    """

    r: int = 1000
    s_over_sqrt_b: float = 2.0
    sets: int = 2000
    signals: tuple[str, ...] = ()
    mode: Literal["binary", "multiclass"] = "binary"
    scan_s_over_sqrt_b: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 5.0)
    scan_r: tuple[int, ...] = (250, 1000, 4000)

    def validate(self) -> None:
        require_range("data.hist.r", self.r, 1)
        require_range("data.hist.s_over_sqrt_b", self.s_over_sqrt_b, 0.0, lo_open=True)
        require_range("data.hist.sets", self.sets, 10)


@dataclass(frozen=True)
class DataSpec:
    """Where the events come from and what the network learns.

    Attributes:
        source: a registered generator (``simulate``, ``jets``, ``monojet``, ``electrons``,
            ``monojet_hist``; cached by configuration hash) or the path of a data file.
        sample: simulated sample (``mixed``, ``darkphoton``, ...) when ``source`` is simulate.
        events: number of simulated events.
        seed: simulation seed.
        sim: overrides of the simulation config, e.g. ``{detector: {noise_rate: 0.0}}``.
        input_shape: image shape the architecture expects; checked against the data.
        split: train / validation / test fractions (blocks of 256 events, assigned by seed).
        split_seed: seed of that assignment.
        target: ``label`` for classification or a truth dataset (e.g. ``vtx_r``) for regression.
        classes: class names (event types) for classification, in output order.
        class_map: event type -> class name, to merge types (e.g. darkphoton: nonpointing).
        target_scale: regression target is divided by this for training (outputs scaled back).
        format: input format; ``auto`` takes it from the source (simulate: hits, jets:
            jet_images, monojet/electrons: table, monojet_hist: histograms; a .csv/.parquet file:
            table; other files: hits unless set).
        generator: overrides of the offline generator's configuration (jets, monojet, electrons).
        features: feature columns of a table (in input order).
        label_column: label column of a table.
        keep: extra truth columns/datasets kept for evaluation (e.g. pt, jet_mass).
        where: keep only rows whose column equals the value (e.g. ``{category: 0}``).
        fill_nan: value for NaN features after standardisation (NaN is an error when unset).
        standardise: scale table features to zero mean and unit variance (training-split
            statistics, recomputed identically at every load).
        input_bits: > 0 turns inputs into integer codes of this width for exact firmware:
            images unsigned ``round(x / input_lsb)``, table features signed (two's complement)
            ``round(z / input_lsb)``, both clipped to the code range.
        input_lsb: the value of one input code step (GeV per count for images).
        augment: training-time augmentations (``jet_symmetries``: eta reflection + phi rotation).
        train_on: classes used for training and validation (e.g. [qcd] for an anomaly search);
            the test split keeps every class.
        hist: pseudo-experiment settings for ``monojet_hist``.
        train_events: > 0 keeps only the first this many training events (a random subset:
            the split is random), e.g. to study the uncertainty versus the training-set size.
    """

    source: str = "simulate"
    sample: str = "mixed"
    events: int = 60000
    seed: int = 1
    sim: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, ...] = (9, 384)
    split: tuple[float, ...] = (0.7, 0.15, 0.15)
    split_seed: int = 0
    target: str = "label"
    classes: tuple[str, ...] = ("noise", "prompt", "nonpointing")
    class_map: dict[str, str] = field(default_factory=dict)
    target_scale: float = 1.0
    format: Literal["auto", "hits", "jet_images", "table", "histograms", "dijet"] = "auto"
    generator: dict[str, Any] = field(default_factory=dict)
    features: tuple[str, ...] = ()
    label_column: str = "label"
    keep: tuple[str, ...] = ()
    where: dict[str, float] = field(default_factory=dict)
    fill_nan: float | None = None
    standardise: bool = False
    input_bits: int = 0
    input_lsb: float = 1.0
    augment: tuple[str, ...] = ()
    train_on: tuple[str, ...] = ()
    hist: HistSpec | None = None
    train_events: int = 0

    @property
    def input_format(self) -> str:
        """The resolved input format (see ``format``)."""
        if self.format != "auto":
            return self.format
        generator = registry.source(self.source)
        if generator is not None:
            return generator.input_format
        return registry.format_of_file(self.source)

    def validate(self) -> None:
        require_range("data.events", self.events, 10)
        require_range("data.train_events", self.train_events, 0)
        require_range("data.input_bits", self.input_bits, 0, 16)
        require_range("data.input_lsb", self.input_lsb, 0.0, lo_open=True)
        for name in self.augment:
            if name not in registry.augmentation_names():
                raise ConfigError(f"data.augment {name!r} unknown; allowed: "
                                  + ", ".join(registry.augmentation_names()))
        fmt = self.input_format
        if fmt == "table" and not self.features:
            raise ConfigError("a table source needs data.features (the feature columns, in "
                              "input order)")
        if fmt == "histograms" and self.hist is None:
            raise ConfigError("source monojet_hist needs a data.hist section (r, "
                              "s_over_sqrt_b, sets, ...)")
        if len(self.split) != 3 or any(f < 0 for f in self.split) or not math.isclose(
            sum(self.split), 1.0, abs_tol=1e-6
        ):
            raise ConfigError(
                f"data.split = {list(self.split)} must be three fractions summing to 1"
            )
        if min(self.split) <= 0:
            raise ConfigError("data.split fractions must all be positive")
        require_range("data.target_scale", self.target_scale, 0.0, lo_open=True)
        check = registry.input_format(fmt).check_data
        if check is not None:  # e.g. hit images: classes must be simulated event types
            check(self)


@dataclass(frozen=True)
class DistillSpec:
    """Knowledge distillation from a trained teacher model (its best checkpoint)."""

    teacher: str = ""
    temperature: float = 4.0
    weight: float = 0.5

    def validate(self) -> None:
        require_range("training.distill.temperature", self.temperature, 0.0, lo_open=True)
        require_range("training.distill.weight", self.weight, 0.0, 1.0)


@dataclass(frozen=True)
class TrainSpec:
    """Optimiser, schedule, early stopping, regularisation and budget.

    Anomaly (autoencoder) models can be decorrelated from the truth variable ``decorrelate``
    (e.g. jet mass) with a DisCo penalty (``disco_lambda`` x distance correlation squared of the
    anomaly score and that variable) or an adversary (``adversary_lambda``; a network predicts
    the variable's quantile bin from the score, the model is trained to defeat it).
    WGAN-GP models use ``critic_steps`` critic updates per generator update and a gradient
    penalty ``gp_lambda``; pixel-set WGAN-GPs can add ``observable_matching`` x the 1D
    Wasserstein distances of jet pT, mass and width between a generated and a real batch to the
    generator loss. ``monitor`` selects ``best.pt`` and drives early stopping on the
    validation split: ``val_loss`` (distillation term included), ``val_accuracy``
    (classification) or ``val_median_abs`` (regression). ``seeds`` > 1 trains that many seeds
    (``seed``, ``seed + 1``, ...) and ships the one with the best ``monitor`` value.
    """

    epochs: int = 20
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.0
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    schedule: Literal["cosine", "constant"] = "cosine"
    patience: int = 5
    seed: int = 0
    sparsity_l1: float = 0.0
    loss: Literal["auto", "cross_entropy", "huber", "mse"] = "auto"
    huber_delta: float = 1.0
    distill: DistillSpec | None = None
    max_minutes: float = 120.0
    threads: int = 2
    monitor: Literal["val_loss", "val_accuracy", "val_median_abs"] = "val_loss"
    seeds: int = 1
    decorrelate: str = "jet_mass"
    disco_lambda: float = 0.0
    adversary_lambda: float = 0.0
    adversary_bins: int = 10
    adversary_lr: float = 1e-3
    critic_steps: int = 5
    gp_lambda: float = 10.0
    observable_matching: float = 0.0

    def validate(self) -> None:
        require_range("training.epochs", self.epochs, 1, 10000)
        require_range("training.disco_lambda", self.disco_lambda, 0.0)
        require_range("training.adversary_lambda", self.adversary_lambda, 0.0)
        require_range("training.adversary_bins", self.adversary_bins, 2, 1000)
        require_range("training.critic_steps", self.critic_steps, 1, 100)
        require_range("training.gp_lambda", self.gp_lambda, 0.0)
        require_range("training.observable_matching", self.observable_matching, 0.0)
        require_range("training.batch_size", self.batch_size, 1, 1 << 16)
        require_range("training.lr", self.lr, 0.0, 10.0, lo_open=True)
        require_range("training.weight_decay", self.weight_decay, 0.0)
        require_range("training.patience", self.patience, 1)
        require_range("training.sparsity_l1", self.sparsity_l1, 0.0)
        require_range("training.max_minutes", self.max_minutes, 0.0, lo_open=True)
        require_range("training.threads", self.threads, 1, 256)
        require_range("training.seeds", self.seeds, 1, 100)


@dataclass(frozen=True)
class EvalSpec:
    """How the model is compared with the standard algorithm on the same events.

    Attributes:
        baseline_mode: coincidence-trigger mode (low, high, phase2) for classification models.
        threshold_gev: its pT threshold (roads calibrated on simulation).
        noise_events: extra noise-only events for the fake rate (same events for both triggers).
        seed: seed of those extra events.
        background: background class of offline classifiers / anomaly searches (ROC curves are
            each other class against it).
        signal_eff: signal efficiency of the background-rejection working point (1/eps_B).
        fake_rate: background efficiency of the efficiency working point (e.g. 0.05).
        variants: sibling models trained and evaluated on the same events in the same run, as
            card overrides, e.g. ``{no_augment: {data.augment: []}}``; reported side by side.
        generated_from: a trained WGAN-GP model whose samples are added to the training set of a
            variant ``with_generated`` (``generated_events`` images).
        generated_events: how many generated images that variant gets.
        hunt: the resonance search of ``source: dijet`` cards (CWoLa, ANODE).
        contamination: the signal-contamination study of an anomaly search.
        decorrelation: the DisCo-strength study of an anomaly search (lambda chosen on the
            validation background).
        augmentation: the generated-sample augmentation study of a classifier.
    """

    baseline_mode: Literal["low", "high", "phase2"] = "high"
    threshold_gev: float = 20.0
    noise_events: int = 100000
    seed: int = 99
    background: str = ""
    signal_eff: float = 0.5
    fake_rate: float = 0.05
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    generated_from: str = ""
    generated_events: int = 0
    hunt: HuntSpec | None = None
    contamination: ContaminationSpec | None = None
    decorrelation: DecorrelationSpec | None = None
    augmentation: AugmentationSpec | None = None

    def validate(self) -> None:
        require_range("evaluation.threshold_gev", self.threshold_gev, 0.0, lo_open=True)
        require_range("evaluation.noise_events", self.noise_events, 0)


@dataclass(frozen=True)
class HardwareSpec:
    """Hardware target used by the export, RTL and synthesis stages."""

    part: str = "xcvu13p-flga2577-2-e"
    clock_ns: float = 3.125
    io_type: Literal["io_parallel", "io_stream"] = "io_parallel"
    latency_cutoff_ns: float = 100.0
    #: da4ml's ``hard_dc``: adder levels that sharing sub-expressions may add to an adder
    #: tree's minimal depth; -1 = no limit (da4ml's default, fewest LUTs), 0-2 trade a few
    #: LUTs for fewer pipeline stages.
    delay_constraint: int = -1

    @property
    def solver_options(self) -> dict[str, int]:
        """Options of da4ml's constant-matrix solver from this card."""
        return {"hard_dc": self.delay_constraint}

    def validate(self) -> None:
        if not PART_PATTERN.fullmatch(self.part):
            raise ConfigError(f"hardware.part {self.part!r} is not an FPGA part name (lower-case "
                              "letters and digits in dash-separated groups, e.g. "
                              "xcvu13p-flga2577-2-e)")
        require_range("hardware.clock_ns", self.clock_ns, 0.0, lo_open=True)
        require_range("hardware.latency_cutoff_ns", self.latency_cutoff_ns, 0.0, lo_open=True)
        require_range("hardware.delay_constraint", self.delay_constraint, -1, 8)


@dataclass(frozen=True)
class ModelCard:
    """Everything about one model; see the section dataclasses for the keys."""

    name: str
    task: Literal["classification", "regression", "anomaly", "generative", "density"]
    description: str = ""
    data: DataSpec = field(default_factory=DataSpec)
    architecture: ArchSpec = field(default_factory=ArchSpec)
    quant: QuantSpec = field(default_factory=QuantSpec)
    training: TrainSpec = field(default_factory=TrainSpec)
    evaluation: EvalSpec = field(default_factory=EvalSpec)
    hardware: HardwareSpec = field(default_factory=HardwareSpec)

    def validate(self) -> None:
        if not self.name.replace("_", "").isalnum():
            raise ConfigError(f"model name {self.name!r} may hold only letters, digits and _")
        if self.task == "classification":
            if self.data.target != "label":
                raise ConfigError(
                    f"classification needs data.target: label (got {self.data.target!r})"
                )
            if len(self.data.classes) < 2:
                raise ConfigError("classification needs at least two data.classes")
        elif self.task == "regression" and self.data.target == "label":
            raise ConfigError("regression needs a truth dataset as data.target, e.g. vtx_r")
        wants = {"val_accuracy": "classification", "val_median_abs": "regression"}
        if self.training.monitor in wants and self.task != wants[self.training.monitor]:
            raise ConfigError(f"training.monitor {self.training.monitor} is for "
                              f"{wants[self.training.monitor]} models; use val_loss")
        if self.task == "anomaly" and self.architecture.kind != "autoencoder":
            raise ConfigError("task anomaly needs architecture.kind: autoencoder")
        self._check_contamination()
        if self.evaluation.decorrelation is not None and self.task != "anomaly":
            raise ConfigError("evaluation.decorrelation is a study of anomaly searches (task: "
                              f"anomaly), not of task {self.task}")
        if self.evaluation.augmentation is not None and self.task != "classification":
            raise ConfigError("evaluation.augmentation is a study of classifiers (task: "
                              f"classification), not of task {self.task}")
        if (self.task == "generative") != (self.architecture.kind in GENERATIVE_KINDS):
            raise ConfigError("task generative goes with architecture.kind: wgan or "
                              "pixel_wgan (and only with them)")
        if (self.task == "density") != (self.architecture.kind == "flow"):
            raise ConfigError("task density goes with architecture.kind: flow (and only it)")
        if self.architecture.bayesian and (self.quant.is_quantised or self.task not in (
                "classification", "regression")):
            raise ConfigError("architecture.bayesian is for float classification or regression "
                              "models (quant.weights: float)")
        if self.quant.is_quantised:
            if self.architecture.kind not in ("l0_cnn", "l0_road", "l0_hitfeat", "cnn", "mlp"):
                raise ConfigError(f"architecture.kind {self.architecture.kind} has no ternary "
                                  "version; use quant.weights: float")
            if not self._format.binary and self.data.input_bits < 1:
                raise ConfigError("a quantised model of non-binary inputs needs data.input_bits "
                                  "(integer input codes for an exact firmware input)")
            if self.input_signed and self.data.input_bits < 2:
                raise ConfigError("signed table codes need data.input_bits >= 2 (a sign bit "
                                  "and at least one magnitude bit)")
        if self.quant.is_quantised and self.architecture.batchnorm:
            raise ConfigError("architecture.batchnorm is only for float models (not exportable "
                              "exactly); set it to false for quant.weights: ternary")

    def _check_contamination(self) -> None:
        spec = self.evaluation.contamination
        if spec is None:
            return
        if self.task != "anomaly":
            raise ConfigError("evaluation.contamination is a study of anomaly searches "
                              f"(task: anomaly), not of task {self.task}")
        bkg = self.evaluation.background or (self.data.classes or ("",))[0]
        for sig in spec.signals:
            if sig not in self.data.classes or sig == bkg:
                raise ConfigError(f"evaluation.contamination.signals: {sig!r} is not a signal "
                                  f"class of data.classes {list(self.data.classes)} (background "
                                  f"{bkg!r})")

    @property
    def n_outputs(self) -> int:
        if self.task == "classification":
            return len(self.data.classes)
        if self.task == "regression" and self.architecture.bayesian:
            return 3 * self.architecture.mixture  # weights, means and widths of Gaussians
        return 0 if self.task in ("anomaly", "generative", "density") else 1

    @property
    def _format(self) -> registry.InputFormat:
        return registry.input_format(self.data.input_format)

    @property
    def input_bits(self) -> int:
        """Width of one input code in firmware (1 for binary inputs such as hit images)."""
        return 1 if self._format.binary else self.data.input_bits

    @property
    def input_signed(self) -> bool:
        """Whether input codes are signed (two's complement): formats with signed codes (table
        features, centred on 0 so that bias-free ternary layers see "average" as zero);
        images and hits are unsigned."""
        return self._format.signed_codes and self.data.input_bits > 0

    @property
    def input_range(self) -> tuple[int, int]:
        """(lowest, highest) input code."""
        return code_range(self.input_bits, self.input_signed)

    def with_overrides(self, name: str, overrides: dict[str, Any],
                       keep_variants: bool = False) -> ModelCard:
        """A sibling card (e.g. an evaluation variant, without variants of its own unless
        ``keep_variants``) with ``section.key: value`` overrides."""
        data = self.to_dict()
        data["name"] = name
        if not keep_variants:
            data["evaluation"]["variants"] = {}
        data = apply_overrides(data, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])
        return from_dict(ModelCard, data)

    def architecture_dict(self) -> dict[str, Any]:
        """What a checkpoint must match to be loaded into this card's network."""
        return {
            "task": self.task, "n_outputs": self.n_outputs,
            "input_shape": list(self.data.input_shape),
            "architecture": to_dict(self.architecture), "quant": to_dict(self.quant),
        }

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def card_path(name_or_path: str | Path, models_dir: Path = MODELS_DIR) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        return p
    return models_dir / f"{p.name}.yaml"


def load_card(name_or_path: str | Path, models_dir: Path = MODELS_DIR) -> ModelCard:
    """Load ``models/<name>.yaml`` (or a card file path) strictly."""
    path = card_path(name_or_path, models_dir)
    if not path.is_file():
        known = sorted(p.stem for p in models_dir.glob("*.yaml")) if models_dir.is_dir() else []
        raise TrigkitError(
            f"model card {path} not found"
            + (f"; known models: {', '.join(known)}" if known else "")
        )
    data = load_yaml(path)
    data.setdefault("name", path.stem)
    if data["name"] != path.stem:
        raise ConfigError(
            f"model card {path} has name {data['name']!r}; it must match the file name"
        )
    try:
        return from_dict(ModelCard, data)
    except ConfigError as err:
        raise ConfigError(f"model card {path}: {err}") from None
