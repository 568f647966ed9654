"""Brevitas -> QONNX export, test vectors and the bit-exactness checks of the export stage.

The cleaned QONNX graph (``build/<name>/model.qonnx.onnx``) is the single source of truth from
here on: the integer reference (:mod:`trigkit.firmware.reference`), hls4ml
(:mod:`trigkit.firmware.hls`) and the RTL are all checked against it on the same vectors
(``build/<name>/vectors.npz``).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from qonnx.transformation.base import Transformation
from qonnx.transformation.batchnorm_to_affine import BatchNormToAffine
from tqdm import tqdm

from trigkit.core import registry
from trigkit.core.card import ModelCard, code_range
from trigkit.core.errors import TrigkitError
from trigkit.core.io import atomic_path
from trigkit.core.paths import ONNX_NAME, VECTORS_NAME
from trigkit.learn.data import code_dtype, load_splits
from trigkit.learn.models import firmware_network, to_input

from .frontend import RowClustersFrontEnd, attach_front_end
from .hls_precision import check_hls_compatible
from .reference import IntegerGraph, ReferenceModel


def clean_qonnx(model_wrapper):
    """qonnx cleanup with batch norms as Mul + Add (BatchNormToAffine), 1-D conv nets made 2-D
    (NCL -> NCL1), channels-last for conv nets (NHWC input), Gemm -> MatMul, cleanup (the recipe
    of TOOLCHAIN.md)."""
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    mw = cleanup_model(cleanup_model(model_wrapper).transform(BatchNormToAffine()))
    if len(mw.get_tensor_shape(mw.graph.input[0].name)) == 3:
        mw = cleanup_model(mw.transform(OneDimToTwoDim()))
    if len(mw.get_tensor_shape(mw.graph.input[0].name)) > 2:
        mw = mw.transform(ConvertToChannelsLastAndClean(make_input_channels_last=True))
    mw = mw.transform(GemmToMatMul())
    return cleanup_model(mw)


class OneDimToTwoDim(Transformation):
    """1-D conv nets ([N, C, L] tensors) as 2-D ones of width 1 ([N, C, L, 1]).

    qonnx's ``Change3DTo4DTensors`` does this for float graphs only (it refuses Quant and Relu
    nodes); here every rank-3 tensor gains a trailing axis, Conv / MaxPool attributes a
    second spatial dimension, rank-3 constants (a Quant node's conv weights, per-channel
    operands) a trailing 1, and a 3-D Transpose keeps the new axis in place."""

    def apply(self, model):
        from onnx import helper
        from qonnx.transformation.infer_shapes import InferShapes

        graph = model.graph
        inits = {init.name for init in graph.initializer}
        for t in [*graph.input, *graph.output, *graph.value_info]:
            dims = t.type.tensor_type.shape.dim
            if len(dims) == 3 and t.name not in inits:
                dims.add().dim_value = 1
        for name in [init.name for init in graph.initializer]:
            value = model.get_initializer(name)
            if value.ndim == 3:
                model.set_initializer(name, value[..., None])
        for node in graph.node:
            attrs = {a.name: a for a in node.attribute}
            if node.op_type in ("Conv", "MaxPool"):
                for name, extra in (("kernel_shape", 1), ("strides", 1), ("dilations", 1)):
                    if name in attrs and len(attrs[name].ints) == 1:
                        attrs[name].ints.append(extra)
                if "pads" in attrs and len(attrs["pads"].ints) == 2:
                    begin, end = attrs["pads"].ints
                    node.attribute.remove(attrs["pads"])
                    node.attribute.append(helper.make_attribute("pads", [begin, 0, end, 0]))
            elif node.op_type == "Transpose" and len(attrs["perm"].ints) == 3:
                attrs["perm"].ints.append(3)
            elif node.op_type == "Reshape":
                shape = model.get_initializer(node.input[1])
                if shape is not None and len(shape) == 3:
                    model.set_initializer(node.input[1], np.append(shape, 1).astype(np.int64))
        return model.transform(InferShapes()), False


def brevitas_to_qonnx(model, example, out_path: Path | None = None):
    """Brevitas model -> cleaned QONNX ModelWrapper (``export_qonnx(dynamo=False)``, see
    TOOLCHAIN.md), saved atomically to ``out_path`` when given. Nothing is checked here."""
    from brevitas.export import export_qonnx as brevitas_export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper

    was_training = model.training
    model.eval()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "raw.onnx"
            with contextlib.redirect_stdout(io.StringIO()):
                brevitas_export_qonnx(model, input_t=example, export_path=str(raw), dynamo=False)
            mw = clean_qonnx(ModelWrapper(str(raw)))
    finally:
        model.train(was_training)
    if out_path is not None:
        with atomic_path(out_path) as tmp_path:
            mw.save(str(tmp_path))
    return mw


def export_qonnx(card: ModelCard, model, out_path: Path) -> Path:
    """Export a trained Brevitas model to a cleaned QONNX file, refusing anything inexact."""
    if not card.quant.is_quantised:
        raise TrigkitError(
            f"{card.name} is a float model (quant.weights: float): it has no exact fixed-point "
            "export. Export its quantised counterpart instead."
        )
    front_end = front_end_of(card)
    if front_end is None:
        mw = brevitas_to_qonnx(model, torch.zeros(1, *_torch_input_shape(card)))
    else:
        mw = brevitas_to_qonnx(firmware_network(model), torch.zeros(1, front_end.n_features))
        attach_front_end(mw, front_end)
    check_hls_compatible(mw)  # names the node and the fix for anything that is not exact
    IntegerGraph(mw)  # and the reference must be able to evaluate it
    with atomic_path(out_path) as tmp_path:
        mw.save(str(tmp_path))
    return out_path


def front_end_of(card: ModelCard) -> RowClustersFrontEnd | None:
    """The fixed firmware front end of ``card``'s architecture, if it has one."""
    if card.architecture.kind != "l0_hitfeat":
        return None
    rows, width = card.data.input_shape[-2:]
    return RowClustersFrontEnd(int(rows), int(width))


def _torch_input_shape(card: ModelCard) -> tuple[int, ...]:
    return tuple(to_input(np.zeros((1, *card.data.input_shape), np.float32), card).shape[1:])


def edge_case_codes(shape: tuple[int, ...], bits: int, seed: int = 0,
                    signed: bool = False, n_random: int = 8) -> np.ndarray:
    """Inputs of ``bits``-bit codes at the corners of the range: all zero, all at the minimum
    and at the maximum, one element at each extreme in each corner, alternating min/max, and
    ``n_random`` uniform random codes."""
    lo, hi = code_range(bits, signed)
    dtype = code_dtype(bits, signed)
    extremes = [v for v in dict.fromkeys((hi, lo)) if v != 0]
    imgs = [np.zeros(shape, dtype)] + [np.full(shape, v, dtype) for v in extremes]
    flat_n = int(np.prod(shape))
    for v in extremes:
        for pos in (0, flat_n // 2, flat_n - 1):
            img = np.zeros(flat_n, dtype)
            img[pos] = v
            imgs.append(img.reshape(shape))
    alt = np.where(np.arange(flat_n) % 2 == 1, hi, lo).astype(dtype).reshape(shape)
    imgs += [alt, np.where(alt == hi, lo, hi).astype(dtype)]
    rng = np.random.default_rng(seed)
    for _ in range(n_random):
        imgs.append(rng.integers(lo, hi + 1, size=shape).astype(dtype))
    return np.stack(imgs)


def make_vectors(card: ModelCard, n_events: int, seed: int) -> np.ndarray:
    """Test vectors + edge cases, from the card's input format: hit images are freshly
    simulated events (not the training data); formats without their own vectors give the
    first ``n_events`` of the test split (as input codes) and generic edge-case codes."""
    own = registry.input_format(card.data.input_format).test_vectors
    if own is not None:
        return own(card, n_events, seed)
    test = load_splits(card)["test"].images()[:n_events]
    edges = edge_case_codes(tuple(card.data.input_shape), card.input_bits, seed,
                            card.input_signed)
    return np.concatenate([test.astype(edges.dtype), edges])


def write_vectors(path: Path, x: np.ndarray, y_int: np.ndarray, y_exp: int) -> Path:
    """vectors.npz as in sw/docs/files.md: x, y_int, y_exp, y = y_int * 2**y_exp (float64)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, x=x, y_int=y_int, y_exp=np.int64(y_exp),
                            y=y_int.astype(np.float64) * 2.0**y_exp)
    return path


def count_mismatches(a: np.ndarray, b: np.ndarray) -> int:
    """Vectors whose outputs differ in any bit (shapes must agree)."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    if a.shape != b.shape:
        raise TrigkitError(f"output shapes differ: {a.shape} vs {b.shape}")
    return int(np.any(a != b, axis=1).sum())


def qonnx_execute(onnx_path: Path, x_graph: np.ndarray, progress: bool = False) -> np.ndarray:
    """Outputs of ``qonnx.core.onnx_exec.execute_onnx`` on each vector (batched by rewriting the
    graph's batch dimension)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    batch = 256
    mw = with_batch(ModelWrapper(str(onnx_path)), batch)
    out_name = mw.graph.output[0].name
    in_name = mw.graph.input[0].name
    outs = []
    starts = range(0, len(x_graph), batch)
    if progress:
        starts = tqdm(starts, desc="qonnx execute", unit="batch", leave=False)
    for s in starts:
        xb = x_graph[s:s + batch].astype(np.float32)
        n = len(xb)
        if n < batch:
            xb = np.concatenate([xb, np.zeros((batch - n, *xb.shape[1:]), np.float32)])
        outs.append(execute_onnx(mw, {in_name: xb})[out_name][:n])
    return np.concatenate(outs).reshape(len(x_graph), -1).astype(np.float64)


def with_batch(mw, batch: int):
    """A copy of the graph with batch size ``batch``: every activation tensor of these graphs
    carries the batch as its leading dimension, so that dimension is rewritten in place."""
    from qonnx.transformation.infer_shapes import InferShapes

    m = mw.transform(InferShapes())  # transform returns a copy with value_info filled in
    inits = {t.name for t in m.graph.initializer}
    for t in [*m.graph.input, *m.graph.output, *m.graph.value_info]:
        dims = t.type.tensor_type.shape.dim
        if t.name not in inits and len(dims) and dims[0].dim_value == 1:
            dims[0].dim_value = batch
    for node in m.graph.node:  # reshape targets that hard-code batch 1
        if node.op_type == "Reshape":
            shape = m.get_initializer(node.input[1])
            if shape is not None and len(shape) and shape[0] == 1:
                shape = shape.copy()
                shape[0] = batch
                m.set_initializer(node.input[1], shape)
    return m


def brevitas_outputs(card: ModelCard, model, x: np.ndarray) -> np.ndarray:
    """The trained PyTorch/Brevitas model's outputs on the vectors (float64)."""
    outs = []
    with torch.no_grad():
        for s in range(0, len(x), 2048):
            outs.append(model(to_input(x[s:s + 2048], card)).double().numpy())
    return np.concatenate(outs)


def run_export(card: ModelCard, model, out_dir: Path, n_vectors: int = 10000, seed: int = 4242,
               progress: bool = False) -> dict:
    """Export, write vectors and count mismatches of QONNX and Brevitas against the reference."""
    timings = {}
    t0 = time.perf_counter()
    onnx_path = export_qonnx(card, model, out_dir / ONNX_NAME)
    timings["export_qonnx"] = time.perf_counter() - t0
    ref = ReferenceModel(onnx_path, task=card.task, classes=list(card.data.classes))
    x = make_vectors(card, n_vectors, seed)
    t0 = time.perf_counter()
    y_int, y_exp = ref.predict_int(x)
    timings["reference"] = time.perf_counter() - t0
    write_vectors(out_dir / VECTORS_NAME, x, y_int, y_exp)
    y = y_int.astype(np.float64) * 2.0**y_exp
    t0 = time.perf_counter()
    y_qonnx = qonnx_execute(onnx_path, ref.to_graph_layout(x), progress)
    timings["qonnx_execute"] = time.perf_counter() - t0
    bit_exact = {
        "vectors": int(len(x)),
        "qonnx_vs_ref": count_mismatches(y_qonnx, y),
        "brevitas_vs_ref": count_mismatches(brevitas_outputs(card, model, x), y),
    }
    return {"bit_exact": bit_exact, "timings": timings, "onnx": onnx_path,
            "vectors": out_dir / VECTORS_NAME}
