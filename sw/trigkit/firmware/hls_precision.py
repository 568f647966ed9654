"""Exact hls4ml precisions for a cleaned QONNX graph, derived from its quantisers.

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
BipolarQuant      values -1 / +1 times the scale (weights; activations are refused: hls4ml's
                  binary activation differs from QONNX)
Add / Sub         exact range on the finer grid of the two operands (a tensor, a quantised
                  constant or a float constant's exact grid); Mul / Div: by a constant, exact
                  range; outside a proven affine chain every result must fit float32's 24 bits
constants         exact type of the stored value (scales, zero points, bit widths)
Model default     the widest derived type (nothing is expected to use it)
================  ==============================================================================

Brevitas exports *every* 1-bit quantiser, also an unsigned {0, 1} one, as ``BipolarQuant``, which
QONNX and hls4ml evaluate as ``x >= 0 -> +scale, else -scale``: a 0/1 hit image would become all
+1. :func:`check_hls_compatible` refuses BipolarQuant; trigkit's models quantise hits with an
unsigned 2-bit quantiser of scale 1 instead, which exports as a plain ``Quant``.

The project build, its cache and the C simulation are in :mod:`trigkit.firmware.hls`.

Longer than the other modules: one grid rule per declared op (the table above) and the
derivation of the hls4ml config from those grids belong together.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import numpy as np

from trigkit.core.errors import TrigkitError

from .fixedpoint import po2_exponent
from .ops import CHANNELS_LAST, check_handlers, check_nodes
from .reference import IntegerGraph, graph_io_problem, is_firmware_cut, prove_affine_chain

_QUANT_OPS = ("Quant", "BipolarQuant")


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
    exponent = po2_exponent(s)
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
    #: node output -> lowered op of an affine chain feeding a Quant (see IntegerGraph)
    chains: dict = field(default_factory=dict)
    constants: dict = field(default_factory=dict)
    grids: dict[str, Grid] = field(default_factory=dict)       # tensor -> grid of its values
    precisions: dict[str, str] = field(default_factory=dict)   # tensor -> hls4ml precision
    accum: dict[str, str] = field(default_factory=dict)        # node output -> accumulator
    weights: dict[str, str] = field(default_factory=dict)      # node output -> weight precision
    quant_consts: dict[str, tuple[np.ndarray, _QuantParams]] = field(default_factory=dict)


def _grid_quant(mw, node, an: _Analysis, graph_input: str) -> None:
    out, inits = node.output[0], {i.name for i in mw.graph.initializer}
    p = _quant_params(mw, node)
    if node.input[0] in inits:
        ints = _quantised_constant(mw, node, p)
        an.quant_consts[out] = (ints, p)
        an.grids[out] = Grid(-p.exponent, min(int(ints.min()), 0), max(int(ints.max()), 0))
        an.precisions[out] = p.precision()
        return
    if node.input[0] not in an.grids and node.input[0] != graph_input:
        raise _fail(node, f"its input {node.input[0]!r} is neither a constant nor a "
                    "quantised tensor", "quantise everything between the graph input "
                    "and this node")
    an.grids[out] = p.grid()
    an.precisions[out] = p.precision()
    if node.input[0] == graph_input:
        an.precisions[graph_input] = p.precision()


def _grid_bipolar(mw, node, an: _Analysis, graph_input: str) -> None:
    """BipolarQuant: values -scale / +scale (codes -1 / +1)."""
    scale = _init(mw, node.input[1])
    exponent = None if scale is None or scale.size != 1 else po2_exponent(float(scale.ravel()[0]))
    if exponent is None:
        raise _fail(node, "its scale is not one constant power of two", "use a power-of-two "
                    "scale (scaling_const = 1, 0.5, ...)", mw)
    p = _QuantParams(exponent, 2, True, True, "AP_RND_CONV", "AP_SAT_SYM")
    out = node.output[0]
    an.grids[out] = Grid(-exponent, -1, 1)
    an.precisions[out] = p.precision()
    value = _init(mw, node.input[0])
    if value is not None:
        an.quant_consts[out] = (np.where(value >= 0, 1, -1).astype(np.int64), p)
    elif node.input[0] == graph_input and not is_firmware_cut(mw):
        raise _fail(node, "a BipolarQuant on the raw graph input (0/1 data would become all +1)",
                    "quantise 0/1 inputs with an unsigned 2-bit quantiser of scale 1, or map "
                    "them to -1/+1 first (2 x - 1)", mw)
    else:
        raise _fail(node, "hls4ml 1.3 turns a BipolarQuant activation into its binary "
                    "activation, which differs from QONNX (measured on Brevitas' TFC 1w1a: "
                    "300 of 300 outputs differ in the C simulation)", "use activations of 2 "
                    "bits or more for hls4ml (reference and RTL compute 1-bit activations "
                    "exactly)", mw)


def _grid_weighted(mw, node, an: _Analysis, g: Grid) -> None:
    """Conv / MatMul: the exact accumulator range against the integer weights."""
    out, w_name = node.output[0], node.input[1]
    if w_name in {i.name for i in mw.graph.initializer}:
        raise _fail(node, f"weight initializer {w_name!r} is float (not fed through a "
                    "Quant node)", "use quantised layers (QuantConv2d / QuantLinear with "
                    "a power-of-two per-tensor weight quantiser)")
    if w_name not in an.quant_consts:
        raise _fail(node, f"weight {w_name!r} is not a quantised constant",
                    "weights must be constant initializers fed through a Quant node")
    w_ints, wp = an.quant_consts[w_name]
    if node.op_type == "MatMul" and w_ints.ndim != 2:
        raise _fail(node, f"weight of rank {w_ints.ndim}", "use a 2-D weight")
    acc = _accumulate(node, g, w_ints, -wp.exponent, 0 if node.op_type == "Conv" else 1)
    if len(node.input) > 2 and node.input[2]:  # a quantised bias
        if node.input[2] not in an.quant_consts:
            raise _fail(node, f"bias {node.input[2]!r} is float (not fed through a Quant node)",
                        "quantise it with a power-of-two bias quantiser (Int16Bias)")
        acc = _check_float32(node, _sum_grid(acc, an.grids[node.input[2]]))
    an.grids[out] = acc
    an.precisions[out] = an.accum[out] = acc.precision()
    an.weights[out] = wp.precision()


def _grid_relu(mw, node, an: _Analysis, g: Grid) -> None:
    an.grids[node.output[0]] = g.relu()
    an.precisions[node.output[0]] = g.relu().precision()


def _grid_maxpool(mw, node, an: _Analysis, g: Grid) -> None:
    an.grids[node.output[0]] = g
    an.precisions[node.output[0]] = an.accum[node.output[0]] = g.precision()


def _grid_avgpool(mw, node, an: _Analysis, g: Grid) -> None:
    """AveragePool over 2**k elements: the sum's range on a grid 2**k finer."""
    if node.domain != CHANNELS_LAST:
        raise _fail(node, "average pooling in NCHW: hls4ml converts only channels-last "
                    "pooling, and qonnx has no channels-last AveragePool to convert it to",
                    "use MaxPool for hls4ml (the reference and the RTL compute AveragePool "
                    "exactly)", mw)
    kh, kw = _attr(node, "kernel_shape")
    n = kh * kw
    out = _check_float32(node, Grid(g.frac + n.bit_length() - 1, g.lo * n, g.hi * n))
    an.grids[node.output[0]] = out
    an.precisions[node.output[0]] = an.accum[node.output[0]] = out.precision()


def _grid_same(mw, node, an: _Analysis, g: Grid) -> None:
    """Reshapes: the values (and so the grid) pass unchanged."""
    an.grids[node.output[0]] = g
    an.precisions[node.output[0]] = g.precision()


def _operand_grid(mw, node, an: _Analysis, name: str) -> tuple[Grid, np.ndarray | None]:
    """The grid of a second operand: a quantised tensor, a quantised constant or a float
    constant (exact: every float is dyadic); the constant's values too (None for tensors)."""
    if name in an.quant_consts:
        ints, p = an.quant_consts[name]
        return an.grids[name], ints * 2.0**p.exponent
    if name in an.grids:
        return an.grids[name], None
    value = _init(mw, name)
    if value is None:
        raise _fail(node, f"operand {name!r} is float here (not on a fixed-point grid)",
                    "quantise it first (a QuantIdentity in the Brevitas model)")
    g = _exact_grid(value, max_frac=1100)
    if g is None:
        raise _fail(node, f"constant {name!r} is not finite", "use finite constants")
    return g, np.asarray(value, dtype=np.float64)


def _check_exact(node, an: _Analysis, g_in: Grid, g: Grid) -> Grid:
    """Outside an affine chain, every result must fit float32; a chain's first node proves
    the chain's quantised codes equal QONNX's over the input grid's range."""
    op = an.chains.get(node.output[0])
    if op is None:
        return _check_float32(node, g)
    if "chain_quant" in op.attrs:
        chain = [(m.kind, an.constants[m.inputs[1]]) for m in op.attrs["chain"]]
        why = prove_affine_chain(chain, an.constants, op.attrs["chain_quant"], -g_in.frac,
                                 max(g_in.hi, -g_in.lo))
        if why is not None:
            raise _fail(node, why, "quantise the affine constants (a batch norm's scale and "
                        "shift) onto power-of-two grids")
    return g


def _check_float32(node, g: Grid) -> Grid:
    n = max(g.hi, -g.lo)
    if n >= 1 << 24:
        raise _fail(node, f"its results need up to {n.bit_length()} significant bits; QONNX "
                    "computes it in float32 (24 bits) and may round", "quantise the constant "
                    "(e.g. a bias with bias_quant=Int16Bias) or the operands onto coarser "
                    "power-of-two grids")
    return g


def _sum_grid(a: Grid, b: Grid, subtract: bool = False) -> Grid:
    f = max(a.frac, b.frac)
    sa, sb = 1 << (f - a.frac), 1 << (f - b.frac)
    if subtract:
        lo, hi = a.lo * sa - b.hi * sb, a.hi * sa - b.lo * sb
    else:
        lo, hi = a.lo * sa + b.lo * sb, a.hi * sa + b.hi * sb
    return Grid(f, min(lo, 0), max(hi, 0))


def _grid_add(mw, node, an: _Analysis, g: Grid) -> None:
    b, _ = _operand_grid(mw, node, an, node.input[1])
    out = _check_exact(node, an, g, _sum_grid(g, b, subtract=node.op_type == "Sub"))
    an.grids[node.output[0]] = out
    an.precisions[node.output[0]] = an.accum[node.output[0]] = out.precision()


def _grid_mul(mw, node, an: _Analysis, g: Grid) -> None:
    b, value = _operand_grid(mw, node, an, node.input[1])
    if value is None:
        raise _fail(node, "product of two tensors", "multiply by a constant only")
    if node.op_type == "Div":
        if np.any(value == 0) or any(po2_exponent(abs(float(v))) is None for v in value.ravel()):
            raise _fail(node, f"division by {sorted(set(value.ravel().tolist()))[:4]}",
                        "divide by a power of two (or fold it into the next quantiser's scale)")
        value = 1.0 / value
        b = _exact_grid(value, max_frac=1100)
    ints = np.round(value * 2.0**b.frac).astype(np.int64).ravel()
    ends = [g.lo * int(v) for v in ints] + [g.hi * int(v) for v in ints]
    out = _check_exact(node, an, g, Grid(g.frac + b.frac, min(min(ends), 0), max(max(ends), 0)))
    an.grids[node.output[0]] = out
    an.precisions[node.output[0]] = an.accum[node.output[0]] = out.precision()


#: Grid rule of each op of trigkit.firmware.ops (Quant is handled by :func:`_grid_quant`).
_GRID_RULES = {"Quant": None, "BipolarQuant": None, "Conv": _grid_weighted,
               "MatMul": _grid_weighted,
               "Relu": _grid_relu, "MaxPool": _grid_maxpool, "Flatten": _grid_same,
               "Reshape": _grid_same, "Transpose": _grid_same, "Add": _grid_add,
               "Sub": _grid_add, "Mul": _grid_mul, "Div": _grid_mul,
               "AveragePool": _grid_avgpool}
check_handlers("the hls4ml precision analysis", _GRID_RULES)


def _analyse(mw) -> _Analysis:
    """Check the graph and derive an exact grid for every tensor (raises TrigkitError)."""
    graph = mw.graph
    inits = {i.name for i in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in inits]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise TrigkitError(graph_io_problem(len(inputs), len(graph.output)))
    users = [n.name for n in graph.node if inputs[0] in n.input]
    if len(users) != 1:
        raise TrigkitError(f"the graph input {inputs[0]!r} feeds {len(users)} nodes "
                           f"({', '.join(users)}); fix: feed it to one input Quant node")
    check_nodes(graph.node)  # every op and attribute is declared in trigkit.firmware.ops
    an = _Analysis()
    try:  # the lowered graph marks the affine chains (proven, not float32-limited)
        lowered, lowering_error = IntegerGraph(mw), None
        an.chains = {op.output: op for op in lowered.ops if "chain" in op.attrs}
        an.constants = lowered.constants
    except TrigkitError as err:  # reported after the checks below, which name the node
        lowering_error = err
    for node in graph.node:
        if node.op_type == "BipolarQuant":
            _grid_bipolar(mw, node, an, inputs[0])
            continue
        if node.op_type in _QUANT_OPS:
            _grid_quant(mw, node, an, inputs[0])
            continue
        data = node.input[0]
        if data in inits:
            raise _fail(node, f"its data input {data!r} is a constant",
                        "fold constants with qonnx's cleanup_model()")
        if data not in an.grids:
            if lowering_error is not None:  # the reference's reason is the precise one
                raise lowering_error
            what = ("the graph input" if data == inputs[0] else f"tensor {data!r}")
            raise _fail(node, f"{what} is float here (not on a fixed-point grid)",
                        "quantise it first (a QuantIdentity / QuantReLU in the Brevitas model)")
        _GRID_RULES[node.op_type](mw, node, an, an.grids[data])

    if inputs[0] not in an.precisions:
        raise TrigkitError(f"the graph input {inputs[0]!r} does not feed a Quant node directly; "
                           "fix: start the model with an input quantiser (QuantIdentity) so the "
                           "input has a fixed-point grid")
    out_name = graph.output[0].name
    if out_name not in an.grids:
        raise TrigkitError(f"the graph output {out_name!r} is not on a fixed-point grid")
    if lowering_error is not None:
        raise lowering_error
    last = mw.find_producer(out_name)
    if last is not None and last.op_type in ("Add", "Sub") and (
            last.input[1] in an.quant_consts or last.input[1] in inits):
        raise _fail(last, "a constant added on the graph's last layer: hls4ml 1.3 leaves that "
                    "constant unconnected and cannot convert the graph", "end the model with "
                    "an activation quantiser (QuantIdentity) after the last biased layer")
    return an


def check_hls_compatible(model_wrapper) -> None:
    """Raise TrigkitError naming the node and the fix if the graph cannot be converted exactly.

    Refused: Quant nodes with non-power-of-two, per-channel (non-scalar) scales or non-zero zero
    points; every op or attribute not declared in :mod:`trigkit.firmware.ops` (BipolarQuant,
    Gemm, Trunc, MultiThreshold, QuantizeLinear/DequantizeLinear, ..., and attributes such as
    biases, grouped/dilated convolutions, padded pooling, graphs that are not channels-last);
    float computation (weights not fed through a Quant node, float inputs).
    """
    _analyse(model_wrapper)


# ---------------------------------------------------------------------------------------------
# hls4ml config
# ---------------------------------------------------------------------------------------------


def quiet_hls4ml():
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
    with quiet_hls4ml():
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
