"""Apply a trained model to new data: ``trigkit predict`` and ``trigkit.load(NAME).predict``.

Inputs are prepared by the card's input format exactly as in training (hit images from HDF5 or
ROOT files, jet images, table rows standardised with the training rows' statistics), in
chunks. The outputs come from the integer reference of the exported graph (``exact``: what the
firmware computes, bit for bit) or from the trained network (``float``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

import numpy as np
from tqdm import tqdm

from trigkit.core import registry
from trigkit.core.card import ModelCard, load_card
from trigkit.core.errors import TrigkitError
from trigkit.core.io import atomic_path, check_output_path
from trigkit.core.paths import ModelFiles
from trigkit.core.rootio import write_tree
from trigkit.evaluate.common import predict_outputs, softmax
from trigkit.firmware.reference import ReferenceModel
from trigkit.firmware.reference import load as load_reference
from trigkit.learn.train import load_trained_model
from trigkit.offline.tabular import write_table

#: Output file suffixes and what they hold.
OUTPUT_SUFFIXES = (".npz", ".csv", ".parquet", ".root")


class Predictor:
    """A trained model card, ready to score new inputs.

    ``exact`` (default: True for an exported quantised model) runs the integer reference of
    ``build/NAME/model.qonnx.onnx``; otherwise the trained network of ``best.pt`` runs.
    """

    def __init__(self, card: ModelCard, exact: bool | None = None):
        self.card = card
        files = ModelFiles(card.name)
        if exact is None:
            exact = card.quant.is_quantised and files.onnx.is_file()
        if exact and not card.quant.is_quantised:
            raise TrigkitError(f"{card.name} is a float model: it has no integer-exact path "
                               "(use the float path)")
        if card.task not in ("classification", "regression"):
            raise TrigkitError(f"predict scores classifiers and regressors; {card.name} is a "
                               f"{card.task} model")
        self.exact = exact
        self.reference = ReferenceModel(files.onnx) if exact else None
        self.model = None if exact else load_trained_model(card)

    def outputs(self, inputs: np.ndarray) -> np.ndarray:
        """Network outputs for inputs prepared as in training (logits, or the regression value
        in target units)."""
        if self.reference is None:
            return np.asarray(predict_outputs(self.model, self.card, inputs), np.float64)
        y = self.reference.predict(inputs)
        if self.card.task == "regression":
            return y[:, 0] * self.card.data.target_scale
        return y

    def chunks(self, source: str | Path | np.ndarray) -> Iterator[np.ndarray]:
        """Prepared inputs of a file (by the card's input format) or of an array given as the
        data layout (e.g. (N, 9, 384) hit images, or already prepared table rows)."""
        if not isinstance(source, str | Path):
            yield np.asarray(source)
            return
        fmt = registry.input_format(self.card.data.input_format)
        if fmt.read_inputs is None:
            raise TrigkitError(f"predict cannot read {fmt.name} inputs")
        yield from fmt.read_inputs(self.card, Path(source))

    def predict(self, source: str | Path | np.ndarray, progress: bool = False) -> np.ndarray:
        """Outputs over every event of ``source`` (a file or an array)."""
        chunks = self.chunks(source)
        first = next(chunks, None)  # the input is checked here, before any progress bar
        rest = tqdm(chunks, disable=not progress or first is None,
                    desc=f"predict {self.card.name}", unit="chunk", leave=False)
        parts = [self.outputs(x) for x in ([] if first is None else chain([first], rest))]
        if not parts:
            return np.zeros((0, self.card.n_outputs))
        return np.concatenate(parts)


def columns(card: ModelCard, y: np.ndarray) -> dict[str, np.ndarray]:
    """Named output columns: classifier logits and probabilities per class, or the value."""
    if card.task == "regression":
        return {card.data.target: np.asarray(y, np.float64)}
    proba = softmax(y)
    out = {f"logit_{c}": y[:, k] for k, c in enumerate(card.data.classes)}
    out |= {f"p_{c}": proba[:, k] for k, c in enumerate(card.data.classes)}
    return out


def predict_stage(card: ModelCard, input_file: Path, out: Path, exact: bool | None = None,
                  overwrite: bool = False, progress: bool = True) -> dict:
    """Score ``input_file`` with ``card`` into ``out`` (.npz, .csv, .parquet or .root, by
    suffix); the input is checked whole before any output. Returns events, seconds, path."""
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise TrigkitError(f"--out {out}: write one of {', '.join(OUTPUT_SUFFIXES)}")
    check_output_path(out, overwrite=overwrite)
    predictor = Predictor(card, exact)
    t0 = time.perf_counter()
    y = predictor.predict(input_file, progress=progress)
    seconds = time.perf_counter() - t0
    cols = columns(card, y)
    suffix = out.suffix.lower()
    if suffix == ".npz":
        arrays = {"y": y, **({"proba": softmax(y), "classes": np.array(card.data.classes)}
                             if card.task == "classification" else {})}
        with atomic_path(out, overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    elif suffix == ".root":
        write_tree(out, iter([cols]), attrs={"model": card.name,
                                             "path": "exact" if predictor.exact else "float"},
                   tree="scores", overwrite=overwrite)
    else:
        write_table(out, cols, overwrite=overwrite)
    return {"events": len(y), "seconds": seconds, "out": out,
            "path": "exact" if predictor.exact else "float"}


def load_predictor(name_or_dir: str | Path, exact: bool | None = None):
    """``trigkit.load``: a card name (``models/NAME.yaml``) gives a :class:`Predictor`; a build
    directory or ONNX file gives the integer reference of that graph."""
    p = Path(name_or_dir)
    if p.suffix == ".onnx" or p.is_dir():
        return load_reference(p)
    return Predictor(load_card(name_or_dir), exact)
