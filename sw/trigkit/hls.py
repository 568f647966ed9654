"""QONNX -> hls4ml C++ (Vitis backend) with every precision derived from the graph's quantisers.

The cleaned QONNX graph of a trigkit ternary network (``Quant`` nodes with power-of-two per-tensor
scales, ``Conv``/``MatMul`` on quantised weights, ``Relu``, ``MaxPool``, ``Flatten``) is walked
once to give every tensor an exact fixed-point grid: values ``n * 2**-frac`` with the integer ``n``
in a proven range ``[lo, hi]``. Each hls4ml layer then gets the narrowest ``ap_[u]fixed`` type
that holds that grid, so no result or accumulator can overflow or round, and the C simulation is
bit-exact with ``qonnx.core.onnx_exec.execute_onnx``:

================  ==============================================================================
layer             precision rule
================  ==============================================================================
graph input       the consuming Quant's type, with its rounding (RND_CONV) and saturation (SAT),
                  so even off-grid inputs are quantised exactly like QONNX does
Quant (data)      ``[u]fixed<b, b + log2(scale), RND_CONV|TRN, SAT|SAT_SYM>``: the quantiser grid
Quant (weights)   the same rule (hls4ml folds it into the weights); the accumulator analysis
                  uses the actual integer weights
Conv / MatMul     accum = result = exact range of ``sum(w * x)`` per output channel over the input
                  range (positive weights x max input + negative weights x min input, and back),
                  with ``frac = frac_in + frac_w``; bias type = the same (biases are zero)
Relu              input grid clipped at 0 (unsigned); ``table`` (unused by ReLU) = result
MaxPool, Flatten  input type (accum too)
constants         exact type of the stored value (scales, zero points, bit widths)
Model default     the widest derived type (nothing is expected to use it)
================  ==============================================================================

Brevitas exports *every* 1-bit quantiser, also an unsigned {0, 1} one, as ``BipolarQuant``, which
QONNX and hls4ml evaluate as ``x >= 0 -> +scale, else -scale``: a 0/1 hit image would become all
+1. :func:`check_hls_compatible` refuses BipolarQuant; trigkit's models quantise hits with an
unsigned 2-bit quantiser of scale 1 instead, which exports as a plain ``Quant``.

Compiled projects are cached by a hash of the ONNX bytes, io_type, part, clock, hls4ml version and
the derived config (``trigkit_hls.json`` in the project directory). A cache hit loads the compiled
shared library through ctypes, like hls4ml does, without converting or compiling anything.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import TrigkitError

#: Version of the conversion code (not visible in the config); part of the cache key.
CACHE_VERSION = 1
#: File in a project directory that records what was compiled there.
STAMP_FILE = "trigkit_hls.json"
#: hls4ml log of the conversion and compilation, in the project directory.
LOG_FILE = "trigkit_hls.log"
#: HLS project (top function) name.
PROJECT_NAME = "trigkit_nn"
#: Copy of the converted ONNX graph kept in the project directory.
ONNX_COPY = "trigkit_model.onnx"

_CHANNELS_LAST = "qonnx.custom_op.channels_last"
_QUANT_OPS = ("Quant", "IntQuant")
_PASS_THROUGH_OPS = ("Flatten", "Reshape", "Transpose", "Identity", "Dropout")
#: ONNX ops this module converts (and derives exact precisions for).
SUPPORTED_OPS = frozenset(
    {*_QUANT_OPS, "Conv", "MatMul", "Relu", "MaxPool", "GlobalMaxPool", *_PASS_THROUGH_OPS}
)
_OP_HINTS = {
    "Gemm": "run qonnx's GemmToMatMul() on the cleaned graph (and export with dynamo=False: "
    "with the dynamo exporter a bias-less Linear gives a Gemm that GemmToMatMul cannot convert)",
    "Trunc": "Trunc (from QuantAvgPool2d or a truncating quantiser) has no hls4ml converter: use "
    "MaxPool or a plain Quant instead",
    "MultiThreshold": "MultiThreshold comes from FINN streamlining, which hls4ml cannot read: "
    "convert the QONNX export itself, before any FINN transformation",
    "QuantizeLinear": "QCDQ-style ONNX is not supported: export with "
    "brevitas.export.export_qonnx (QONNX Quant nodes) instead of export_onnx_qcdq",
    "BipolarQuant": "quantise binary (0/1) inputs with an unsigned 2-bit quantiser of scale 1, "
    "as trigkit.models does, so that they export as a plain Quant",
}
_OP_HINTS["DequantizeLinear"] = _OP_HINTS["QuantizeLinear"]
for _op in ("Add", "Sub", "Mul", "Div"):
    _OP_HINTS[_op] = "use bias=False and power-of-two per-tensor quantisers, so that no float " \
        "arithmetic (a bias or a rescaling) is left in the graph"
_OP_PROBLEMS = {
    "BipolarQuant": "BipolarQuant maps x >= 0 to +scale and x < 0 to -scale, and Brevitas exports "
    "every 1-bit quantiser, also an unsigned {0, 1} one, as BipolarQuant: a 0/1 hit image "
    "would become all +1",
    "Add": "float arithmetic (Add) left in the graph",
}
for _op in ("Sub", "Mul", "Div"):
    _OP_PROBLEMS[_op] = f"float arithmetic ({_op}) left in the graph"


# ---------------------------------------------------------------------------------------------
# Fixed-point grids
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """Values ``n * 2**-frac`` with integer ``n`` in ``[lo, hi]`` (always containing 0)."""

    frac: int
    lo: int
    hi: int

    @property
    def signed(self) -> bool:
        return self.lo < 0

    @property
    def width(self) -> int:
        mag = max(self.hi.bit_length(), (-self.lo - 1).bit_length() if self.lo < 0 else 0)
        return max(mag, 1) + (1 if self.signed else 0)

    @property
    def integer(self) -> int:
        return self.width - self.frac

    def precision(self, rounding: str | None = None, saturation: str | None = None) -> str:
        """hls4ml precision string, e.g. ``ufixed<3,0,RND_CONV,SAT,0>`` or ``fixed<7,3>``."""
        return _fixed_string(self.width, self.integer, self.signed, rounding, saturation)

    def relu(self) -> Grid:
        return Grid(self.frac, 0, max(self.hi, 0))

    def values(self) -> tuple[float, float]:
        return self.lo * 2.0 ** -self.frac, self.hi * 2.0 ** -self.frac


def _fixed_string(width: int, integer: int, signed: bool, rounding: str | None = None,
                  saturation: str | None = None) -> str:
    from hls4ml.model.types import FixedPrecisionType

    return str(FixedPrecisionType(width, integer, signed, rounding, saturation))


def _exact_grid(values: np.ndarray, max_frac: int = 64) -> Grid | None:
    """The grid of a constant array of dyadic values (None if not representable)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return Grid(0, 0, 0)
    if not np.all(np.isfinite(v)):
        return None
    if not np.any(v):
        return Grid(0, 0, 0)
    for frac in range(-32, max_frac + 1):
        n = v * 2.0 ** frac
        if np.all(n == np.round(n)):
            ints = np.round(n)
            return Grid(frac, min(int(ints.min()), 0), max(int(ints.max()), 0))
    return None


def _po2_exponent(scale: float) -> int | None:
    """e with scale == 2**e, or None."""
    if not (scale > 0 and math.isfinite(scale)):
        return None
    mantissa, exp = math.frexp(scale)
    return exp - 1 if mantissa == 0.5 else None


# ---------------------------------------------------------------------------------------------
# Compatibility check and precision derivation (on the QONNX graph)
# ---------------------------------------------------------------------------------------------


def _fail(node, problem: str, fix: str, mw=None) -> TrigkitError:
    where = node.op_type
    if mw is not None and node.output:
        users = [n.name for n in mw.find_consumers(node.output[0]) or []]
        if users:
            where += f" feeding {', '.join(users)}"
    return TrigkitError(f"node {node.name!r} ({where}): {problem}; fix: {fix}")


def _attr(node, name: str, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _init(mw, name: str) -> np.ndarray | None:
    return mw.get_initializer(name) if name else None


@dataclass(frozen=True)
class _QuantParams:
    exponent: int
    bitwidth: int
    signed: bool
    narrow: bool
    rounding: str  # hls4ml rounding mode
    saturation: str

    def grid(self) -> Grid:
        from qonnx.custom_op.general.quant import max_int, min_int

        lo = int(min_int(self.signed, self.narrow, self.bitwidth))
        hi = int(max_int(self.signed, self.narrow, self.bitwidth))
        return Grid(-self.exponent, min(lo, 0), max(hi, 0))

    def precision(self) -> str:
        """What hls4ml itself derives for this Quant node (QuantToActivation / FuseQuantWith...)."""
        return _fixed_string(self.bitwidth, self.bitwidth + self.exponent, self.signed,
                             self.rounding, self.saturation)


def _quant_params(mw, node) -> _QuantParams:
    """Validate a Quant node's parameters (power-of-two scalar scale, zero point 0, ...)."""

    def fail(problem: str, fix: str) -> TrigkitError:
        return _fail(node, problem, fix, mw)

    if len(node.input) != 4:
        raise fail(f"has {len(node.input)} inputs instead of 4 (x, scale, zeropt, bitwidth)",
                   "re-export with brevitas.export.export_qonnx")
    scale, zeropt, bitwidth = (_init(mw, n) for n in node.input[1:4])
    if scale is None or zeropt is None or bitwidth is None:
        raise fail("scale, zero point and bit width must be constant initializers",
                   "run qonnx's cleanup_model() so constant subgraphs are folded")
    if scale.size != 1:
        raise fail(f"per-channel (non-scalar) scale of shape {list(scale.shape)}; hls4ml needs "
                   "one power of two per tensor", "use a per-tensor quantiser with a power of "
                   "two scale (*PerTensorFixedPoint, or a power-of-two scaling_const)")
    s = float(scale.ravel()[0])
    exponent = _po2_exponent(s)
    if exponent is None:
        raise fail(f"scale {s:g} is not a power of two (hls4ml would insert ApplyAlpha "
                   "rescaling, which is not bit-exact)", "use a power of two scale: a "
                   "fixed-point quantiser or scaling_const = 0.125 / 0.25 / 0.5 / 1")
    if np.any(zeropt != 0):
        raise fail(f"non-zero zero point {zeropt.ravel()[:4].tolist()}",
                   "use a symmetric (zero-point-free) quantiser, e.g. *PerTensorFixedPoint")
    if bitwidth.size != 1 or float(bitwidth.ravel()[0]) != round(float(bitwidth.ravel()[0])):
        raise fail(f"bit width {bitwidth.ravel().tolist()} is not one integer",
                   "use a constant integer bit width")
    bw = int(round(float(bitwidth.ravel()[0])))
    signed = bool(_attr(node, "signed", 1))
    narrow = bool(_attr(node, "narrow", 0))
    mode = str(_attr(node, "rounding_mode", "ROUND")).upper()
    rounding = {"ROUND": "AP_RND_CONV", "HALF_EVEN": "AP_RND_CONV", "FLOOR": "AP_TRN"}.get(mode)
    if rounding is None:
        raise fail(f"rounding mode {mode} has no hls4ml equivalent",
                   "use ROUND (round half to even) or FLOOR")
    if narrow and not signed:
        raise fail("narrow range with an unsigned quantiser is not supported by hls4ml",
                   "use narrow_range=False for unsigned quantisers")
    if bw < 1 or (bw == 1 and signed):
        raise fail(f"bit width {bw} ({'signed' if signed else 'unsigned'})",
                   "use at least 1 bit unsigned or 2 bits signed")
    return _QuantParams(exponent, bw, signed, narrow, rounding,
                        "AP_SAT_SYM" if narrow else "AP_SAT")


def _quantised_constant(mw, node, p: _QuantParams) -> np.ndarray:
    """Integer values (multiples of the scale) that a Quant node makes of its constant input."""
    from qonnx.custom_op.general.quant import quant

    x = _init(mw, node.input[0])
    scale = 2.0 ** p.exponent
    mode = str(_attr(node, "rounding_mode", "ROUND")).upper()
    q = quant(x.astype(np.float64), np.float64(scale), np.float64(0.0), np.float64(p.bitwidth),
              p.signed, p.narrow, mode)
    return np.round(q / scale).astype(np.int64)


def _accumulate(node, in_grid: Grid, w_ints: np.ndarray, w_frac: int, out_axis: int) -> Grid:
    """Exact range of sum(w * x) per output channel, x anywhere in ``in_grid``."""
    w = np.moveaxis(w_ints, out_axis, 0).reshape(w_ints.shape[out_axis], -1)
    pos = np.where(w > 0, w, 0).sum(axis=1)
    neg = np.where(w < 0, w, 0).sum(axis=1)
    hi = pos * in_grid.hi + neg * in_grid.lo
    lo = pos * in_grid.lo + neg * in_grid.hi
    return Grid(in_grid.frac + w_frac, min(int(lo.min()), 0), max(int(hi.max()), 0))


@dataclass
class _Analysis:
    grids: dict[str, Grid]            # tensor name -> grid of its values
    precisions: dict[str, str]        # tensor name -> hls4ml precision string of that tensor
    accum: dict[str, str]             # node output tensor -> accumulator precision
    weights: dict[str, str]           # node output tensor -> weight precision (Conv/MatMul)


def _analyse(mw) -> _Analysis:
    """Check the graph and derive an exact grid for every tensor (raises TrigkitError)."""
    graph = mw.graph
    inits = {i.name for i in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in inits]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise TrigkitError(f"the graph has {len(inputs)} inputs and {len(graph.output)} outputs; "
                           "trigkit.hls handles one input and one output")
    users = [n.name for n in graph.node if inputs[0] in n.input]
    if len(users) != 1:
        raise TrigkitError(f"the graph input {inputs[0]!r} feeds {len(users)} nodes "
                           f"({', '.join(users)}); fix: feed it to one input Quant node")
    grids: dict[str, Grid] = {}
    precisions: dict[str, str] = {}
    accum: dict[str, str] = {}
    weights: dict[str, str] = {}
    quant_consts: dict[str, tuple[np.ndarray, _QuantParams]] = {}

    for node in graph.node:
        op = node.op_type
        if op not in SUPPORTED_OPS:
            hint = _OP_HINTS.get(op, "rewrite the graph with the supported ops "
                                 f"({', '.join(sorted(SUPPORTED_OPS))})")
            problem = _OP_PROBLEMS.get(op, f"{op} cannot be converted by hls4ml / trigkit.hls")
            raise _fail(node, problem, hint)

    for node in graph.node:
        op = node.op_type
        out = node.output[0]
        if op in _QUANT_OPS:
            p = _quant_params(mw, node)
            if node.input[0] in inits:
                ints = _quantised_constant(mw, node, p)
                quant_consts[out] = (ints, p)
                grids[out] = Grid(-p.exponent, min(int(ints.min()), 0), max(int(ints.max()), 0))
                precisions[out] = p.precision()
                continue
            if node.input[0] not in grids and node.input[0] != inputs[0]:
                raise _fail(node, f"its input {node.input[0]!r} is neither a constant nor a "
                            "quantised tensor", "quantise everything between the graph input "
                            "and this node")
            grids[out] = p.grid()
            precisions[out] = p.precision()
            if node.input[0] == inputs[0]:
                precisions[inputs[0]] = p.precision()
            continue

        data = node.input[0]
        if data in inits:
            raise _fail(node, f"its data input {data!r} is a constant",
                        "fold constants with qonnx's cleanup_model()")
        if data not in grids:
            what = ("the graph input" if data == inputs[0] else f"tensor {data!r}")
            raise _fail(node, f"{what} is float here (not on a fixed-point grid)",
                        "quantise it first (a QuantIdentity / QuantReLU in the Brevitas model)")
        g = grids[data]
        if op in ("Conv", "MaxPool") and node.domain != _CHANNELS_LAST:
            raise _fail(node, "the graph is not channels-last",
                        "run qonnx's ConvertToChannelsLastAndClean(make_input_channels_last=True)")
        if op in ("Conv", "MatMul"):
            w_name = node.input[1]
            if w_name in inits:
                raise _fail(node, f"weight initializer {w_name!r} is float (not fed through a "
                            "Quant node)", "use quantised layers (QuantConv2d / QuantLinear with "
                            "a power-of-two per-tensor weight quantiser)")
            if w_name not in quant_consts:
                raise _fail(node, f"weight {w_name!r} is not a quantised constant",
                            "weights must be constant initializers fed through a Quant node")
            if len(node.input) > 2 and node.input[2]:
                raise _fail(node, "has a bias input", "use bias=False")
            if op == "Conv":
                if int(_attr(node, "group", 1)) != 1:
                    raise _fail(node, "grouped convolution", "use group=1")
                if any(d != 1 for d in _attr(node, "dilations", [1])):
                    raise _fail(node, "dilated convolution", "use dilation 1")
            w_ints, wp = quant_consts[w_name]
            if op == "MatMul" and w_ints.ndim != 2:
                raise _fail(node, f"weight of rank {w_ints.ndim}", "use a 2-D weight")
            acc = _accumulate(node, g, w_ints, -wp.exponent, 0 if op == "Conv" else 1)
            grids[out] = acc
            precisions[out] = accum[out] = acc.precision()
            weights[out] = wp.precision()
        elif op == "Relu":
            grids[out] = g.relu()
            precisions[out] = grids[out].precision()
        elif op in ("MaxPool", "GlobalMaxPool"):
            if op == "MaxPool" and (any(_attr(node, "pads", [0])) or _attr(node, "ceil_mode", 0)):
                raise _fail(node, "padded or ceil-mode max pooling", "use valid pooling")
            grids[out] = g
            precisions[out] = accum[out] = g.precision()
        else:  # reshapes
            if op == "Flatten" and int(_attr(node, "axis", 1)) != 1:
                raise _fail(node, "flattens from an axis other than 1", "flatten from axis 1")
            grids[out] = g
            precisions[out] = g.precision()

    if inputs[0] not in precisions:
        raise TrigkitError(f"the graph input {inputs[0]!r} does not feed a Quant node directly; "
                           "fix: start the model with an input quantiser (QuantIdentity) so the "
                           "input has a fixed-point grid")
    out_name = graph.output[0].name
    if out_name not in grids:
        raise TrigkitError(f"the graph output {out_name!r} is not on a fixed-point grid")
    return _Analysis(grids, precisions, accum, weights)


def check_hls_compatible(model_wrapper) -> None:
    """Raise TrigkitError naming the node and the fix if the graph cannot be converted exactly.

    Refused: Quant nodes with non-power-of-two, per-channel (non-scalar) scales or non-zero zero
    points; BipolarQuant (unsigned 1-bit inputs turn into +-1); ops hls4ml cannot convert
    (Gemm, Trunc, MultiThreshold, QuantizeLinear/DequantizeLinear) or that are not in
    :data:`SUPPORTED_OPS`; float computation (weights not fed through a Quant node, float inputs);
    graphs that are not channels-last; biases, grouped/dilated convolutions, padded pooling.
    """
    _analyse(model_wrapper)


# ---------------------------------------------------------------------------------------------
# hls4ml config
# ---------------------------------------------------------------------------------------------


def _quiet():
    """Capture hls4ml's prints (it prints every layer) into a buffer."""
    return contextlib.redirect_stdout(io.StringIO())


def _hls_name(name: str, class_name: str) -> str:
    from hls4ml.converters.onnx_to_hls import replace_char_inconsitency

    name = replace_char_inconsitency(name)
    return class_name.lower() + name if name[0].isdigit() else name


def hls_config_from_qonnx(model_wrapper) -> dict:
    """The hls4ml config (granularity 'name', Vitis) with every precision derived from the graph.

    Every ``Precision`` entry of every layer, and the model default, is replaced by a type derived
    from the quantisers (module docstring); anything left that the rules do not cover raises.
    """
    from hls4ml.converters.onnx_to_hls import parse_onnx_model
    from hls4ml.utils.config import config_from_onnx_model

    an = _analyse(model_wrapper)
    proto = model_wrapper.model
    with _quiet():
        layers, _, _ = parse_onnx_model(proto)
        cfg = config_from_onnx_model(proto, granularity="name", backend="Vitis")

    inits = {i.name: i for i in proto.graph.initializer}
    hls_inputs = {_hls_name(i.name, "InputLayer"): i.name for i in proto.graph.input}
    hls_consts = {_hls_name(t, "Constant"): t for t in inits}
    by_layer: dict[str, dict[str, str]] = {}
    classes = {layer["name"]: layer["class_name"] for layer in layers}
    for layer in layers:
        cls, name = layer["class_name"], layer["name"]
        if cls == "InputLayer":
            by_layer[name] = {"result": an.precisions[hls_inputs[name]]}
        elif cls == "Constant":
            tensor = hls_consts[name]
            consumer = next((n for n in proto.graph.node
                             if n.op_type in _QUANT_OPS and n.input[0] == tensor), None)
            if consumer is not None:  # weights: hls4ml gives them the Quant node's type
                prec = an.precisions[consumer.output[0]]
            else:  # scale / zero point / bit width
                from onnx import numpy_helper

                g = _exact_grid(numpy_helper.to_array(inits[tensor]))
                if g is None:
                    raise TrigkitError(f"constant {tensor!r} has no exact fixed-point type")
                prec = g.precision()
            by_layer[name] = {"result": prec}
        else:
            out = layer["outputs"][0]
            res = an.precisions[out]
            entry = {"result": res}
            if out in an.accum:
                entry["accum"] = an.accum[out]
            if out in an.weights:
                entry["weight"] = an.weights[out]
                entry["bias"] = res
            by_layer[name] = entry

    widest = max(an.grids.values(), key=lambda g: (g.width, g.integer))
    cfg["Model"]["Precision"] = {"default": widest.precision()}
    for name, lcfg in cfg["LayerName"].items():
        if name not in by_layer:
            raise TrigkitError(f"hls4ml layer {name!r} has no derived precision (trigkit.hls bug)")
        derived = by_layer[name]
        prec = lcfg.setdefault("Precision", {})
        for key in list(prec):
            if key == "table":  # lookup table of table-based activations; ReLU has none
                prec[key] = derived["result"]
            elif key in derived:
                prec[key] = derived[key]
            else:
                raise TrigkitError(f"hls4ml layer {name!r} wants a {key!r} precision that "
                                   "trigkit.hls cannot derive")
        for key, value in derived.items():
            prec.setdefault(key, value)
        if classes[name] in ("Activation", "Quant"):
            # hls4ml 1.3 ignores Precision/table for activations (their table_t attribute keeps
            # its fixed<18,8> default) unless it is given as a layer attribute; a Quant node's
            # config is copied to the linear activation it becomes.
            lcfg["table_t"] = derived["result"]
    return cfg


def iter_precisions(cfg: dict, path: str = ""):
    """Yield (path, precision) for every precision of an hls4ml config (``*_t`` attributes too)."""
    for key, value in cfg.items():
        here = f"{path}/{key}"
        if key.endswith("_t") and isinstance(value, str):
            yield here, value
        elif key == "Precision":
            if isinstance(value, dict):
                for k, v in value.items():
                    yield f"{here}/{k}", v
            else:
                yield here, value
        elif isinstance(value, dict):
            yield from iter_precisions(value, here)


# ---------------------------------------------------------------------------------------------
# Project build, cache and prediction
# ---------------------------------------------------------------------------------------------


def graph_hash(onnx_path: str | os.PathLike, io_type: str, part: str, clock_ns: float,
               config: dict | None = None) -> str:
    """Cache key: ONNX bytes, io_type, part, clock, hls4ml version and the derived hls4ml config.

    The config (derived in milliseconds) stands for the precision rules: a change of the rules
    changes the key, a cosmetic edit of this module does not. :data:`CACHE_VERSION` covers
    changes of the conversion that the config does not show.
    """
    import hls4ml
    from qonnx.core.modelwrapper import ModelWrapper

    data = Path(onnx_path).read_bytes()
    if config is None:
        config = hls_config_from_qonnx(ModelWrapper(data))
    h = hashlib.sha256(data)
    h.update(json.dumps([io_type, part, float(clock_ns), hls4ml.__version__, PROJECT_NAME,
                         CACHE_VERSION]).encode())
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    return h.hexdigest()


class HLSProject:
    """A compiled hls4ml project: C simulation through its shared library.

    Attributes:
        out_dir: project directory (``firmware/``, ``build_prj.tcl``, ...).
        graph_hash: cache key of what was compiled (see :func:`graph_hash`).
        config: the hls4ml config used (every precision derived).
        from_cache: True when the compiled library was reused without converting or compiling.
        build_seconds: time spent converting and compiling (0 for a cache hit).
        hls_model: the hls4ml ModelGraph for a fresh build, None for a cache hit.
    """

    def __init__(self, out_dir: Path, stamp: dict, from_cache: bool, build_seconds: float,
                 hls_model=None):
        self.out_dir = Path(out_dir)
        self.graph_hash: str = stamp["hash"]
        self.config: dict = stamp["config"]
        self.io_type: str = stamp["io_type"]
        self.input_shape = tuple(stamp["input_shape"])
        self.output_shape = tuple(stamp["output_shape"])
        self.from_cache = from_cache
        self.build_seconds = build_seconds
        self.hls_model = hls_model
        self._stamp = stamp
        self.library = self.out_dir / stamp["library"]
        lib = ctypes.cdll.LoadLibrary(str(self.library.resolve()))
        self._fn = getattr(lib, f"{stamp['project']}_double")
        self._fn.restype = None
        ptr = np.ctypeslib.ndpointer(ctypes.c_double, flags="C_CONTIGUOUS")
        self._fn.argtypes = [ptr, ptr]

    def predict(self, x_nhwc: np.ndarray) -> np.ndarray:
        """C-simulation outputs (float64, shape (N, *output)) for a batch (or one sample)."""
        x = np.asarray(x_nhwc, dtype=np.float64)
        single = x.shape == self.input_shape
        if single:
            x = x[None]
        if x.shape[1:] != self.input_shape:
            raise TrigkitError(f"input shape {list(x.shape)} does not match the project's "
                               f"(N, {', '.join(map(str, self.input_shape))}) (NHWC)")
        n_out = int(np.prod(self.output_shape))
        y = np.zeros((len(x), n_out), dtype=np.float64)
        for i in range(len(x)):
            xi = np.ascontiguousarray(x[i].ravel())
            yi = np.zeros(n_out, dtype=np.float64)
            self._fn(xi, yi)
            y[i] = yi
        y = y.reshape((len(x), *self.output_shape))
        return y[0] if single else y

    def hls4ml_model(self):
        """The hls4ml ModelGraph, linked to the compiled library without recompiling.

        For a cache hit the graph is converted again from the ONNX copy in the project (about a
        second; nothing is written or compiled) and its ``_top_function_lib`` is set to the
        existing shared library, which is all hls4ml's ``predict`` needs.
        """
        if self.hls_model is None:
            from hls4ml.converters import convert_from_onnx_model
            from qonnx.core.modelwrapper import ModelWrapper

            mw = ModelWrapper(str(self.out_dir / ONNX_COPY))
            with _quiet():
                hm = convert_from_onnx_model(
                    mw.model, output_dir=str(self.out_dir), project_name=self._stamp["project"],
                    backend="Vitis", io_type=self.io_type,
                    hls_config=json.loads(json.dumps(self.config)), part=self._stamp["part"],
                    clock_period=self._stamp["clock_ns"])
            hm._top_function_lib = ctypes.cdll.LoadLibrary(str(self.library.resolve()))
            self.hls_model = hm
        return self.hls_model

    def __repr__(self) -> str:
        return (f"HLSProject({str(self.out_dir)!r}, hash={self.graph_hash[:12]}, "
                f"io_type={self.io_type!r}, from_cache={self.from_cache})")


def _read_stamp(out_dir: Path, key: str) -> dict | None:
    try:
        stamp = json.loads((out_dir / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None
    if stamp.get("hash") != key or not (out_dir / stamp.get("library", "")).is_file():
        return None
    return stamp


def build_hls_project(onnx_path: Path, out_dir: Path, io_type: str = "io_parallel",
                      part: str = "xcvu13p-flga2577-2-e", clock_ns: float = 3.125,
                      cache_dir: Path | None = None) -> HLSProject:
    """Convert a cleaned QONNX file with hls4ml (Vitis backend) and compile its C simulation.

    Reuses ``out_dir`` when it already holds the compiled library of the same cache key, else a
    copy from ``cache_dir/<key>`` when given; a fresh build is copied into ``cache_dir`` too.
    """
    from qonnx.core.modelwrapper import ModelWrapper

    if io_type not in ("io_parallel", "io_stream"):
        raise TrigkitError(f"io_type {io_type!r}: use 'io_parallel' or 'io_stream'")
    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    if not onnx_path.is_file():
        raise TrigkitError(f"ONNX file {onnx_path} does not exist")
    mw = ModelWrapper(str(onnx_path))
    cfg = hls_config_from_qonnx(mw)  # refuses incompatible graphs before any cache lookup
    key = graph_hash(onnx_path, io_type, part, clock_ns, cfg)

    stamp = _read_stamp(out_dir, key)
    if stamp is None and cache_dir is not None:
        cached = Path(cache_dir) / key[:16]
        if _read_stamp(cached, key) is not None:
            _replace_dir(out_dir)
            shutil.copytree(cached, out_dir)
            stamp = _read_stamp(out_dir, key)
    if stamp is not None:
        return HLSProject(out_dir, stamp, from_cache=True, build_seconds=0.0)

    t0 = time.perf_counter()
    _replace_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hls_model, library = _convert_and_compile(mw, cfg, out_dir, io_type, part, clock_ns)
    shutil.copyfile(onnx_path, out_dir / ONNX_COPY)
    inp = mw.get_tensor_shape(mw.graph.input[0].name)
    outp = mw.get_tensor_shape(mw.graph.output[0].name)
    stamp = {
        "hash": key, "io_type": io_type, "part": part, "clock_ns": clock_ns,
        "project": PROJECT_NAME, "library": str(library.relative_to(out_dir)),
        "input_shape": list(inp[1:]), "output_shape": list(outp[1:]),
        "onnx": str(onnx_path), "config": cfg,
    }
    tmp = out_dir / (STAMP_FILE + ".tmp")
    tmp.write_text(json.dumps(stamp, indent=1, default=str))
    os.replace(tmp, out_dir / STAMP_FILE)
    seconds = time.perf_counter() - t0
    if cache_dir is not None:
        cached = Path(cache_dir) / key[:16]
        _replace_dir(cached)
        shutil.copytree(out_dir, cached)
    return HLSProject(out_dir, stamp, from_cache=False, build_seconds=seconds,
                      hls_model=hls_model)


def _replace_dir(path: Path) -> None:
    """Remove a previous trigkit project directory (only one carrying our stamp file)."""
    if path.exists():
        if not (path / STAMP_FILE).exists() and any(path.iterdir()):
            if not (path / "firmware").is_dir():
                raise TrigkitError(f"{path} exists and is not an hls4ml project; choose an empty "
                                   "or new output directory")
        shutil.rmtree(path)


def _convert_and_compile(mw, cfg: dict, out_dir: Path, io_type: str, part: str,
                         clock_ns: float):
    from hls4ml.converters import convert_from_onnx_model

    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            hls_model = convert_from_onnx_model(
                mw.model, output_dir=str(out_dir), project_name=PROJECT_NAME, backend="Vitis",
                io_type=io_type, hls_config=json.loads(json.dumps(cfg)), part=part,
                clock_period=clock_ns)
            hls_model.compile()
    except Exception as exc:
        (out_dir / LOG_FILE).write_text(log.getvalue())
        raise TrigkitError(f"hls4ml conversion/compilation failed ({exc}); log in "
                           f"{out_dir / LOG_FILE}") from exc
    (out_dir / LOG_FILE).write_text(log.getvalue())
    stamp = hls_model.config.get_config_value("Stamp")
    library = out_dir / "firmware" / f"{PROJECT_NAME}-{stamp}.so"
    if not library.is_file():
        raise TrigkitError(f"hls4ml compiled no library at {library}; log in {out_dir / LOG_FILE}")
    return hls_model, library
