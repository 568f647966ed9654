"""The QONNX -> da4ml replay: the integer graph traced into da4ml combinational logic.

The lowered graph of :class:`trigkit.firmware.reference.IntegerGraph` is replayed op by op on
da4ml's symbolic ``FixedVariableArray``. Every tensor is traced as *integers* with a
power-of-two exponent kept on the Python side (value = int * 2**exp), exactly like the
reference, so the traced logic computes the reference's integers bit for bit:

=========  ===================================================================================
op         traced as
=========  ===================================================================================
input      one ``input_bits``-bit integer per element: unsigned for images (hit images: 1 bit,
           values 0/1), two's complement for signed table codes
Quant      ``s = x * 2**-shift`` (free), clip ``s`` to ``[lo, hi]`` with max/min against
           constants (no logic where the proven range already fits), round half to even (see
           below); clipping first is exact (rounding is monotone and keeps integers) and keeps
           the rounding adder as narrow as the output
Conv       im2col from shifted slices, then one constant-matrix product per output position
           against the integer (ternary) weights, ``(kh*kw*Cin, Cout)``
MatMul     constant-matrix product against the integer weights ``(K, M)``
MaxPool    element-wise max over the shifted slices of the window (OR for single bits)
Relu       ``relu()``; Flatten / Reshape / Transpose: index bookkeeping only (no logic)
=========  ===================================================================================

Rounding. QONNX ``ROUND`` rounds half to even; da4ml only offers truncation (TRN) and half up
(RND). Half to even is built from truncation: with ``q = floor(x / 2**k)`` and ``b = q & 1``,
``round_half_even(x / 2**k) = floor((x + 2**(k-1) - 1 + b) / 2**k)`` for integer ``x`` and
``k >= 1`` (the remainder ``r`` rounds up iff ``r > 2**(k-1)`` or ``r == 2**(k-1)`` and ``q`` is
odd). ``b`` is one wire of ``x`` (bit ``k``), so this costs one small adder per element. Where the
shift is <= 0, or da4ml proves the value already lies on the output grid, no rounding logic is
emitted (nothing can round there). ``tests/test_rtl.py`` checks ties, negative ties and clipping
at both ends against the reference.

Max-pooling of single bits (the OR-pool of the hit image) is a plain OR; wider max-pools are
balanced trees of comparators (log depth).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from trigkit.core.errors import TrigkitError

from .fixedpoint import quant_range
from .layout import check_input_range, load_vectors
from .ops import check_handlers
from .reference import IntegerGraph, ReferenceModel, affine_chain_codes, inverse_constant

#: Largest number of inputs of one da4ml CMVM problem. da4ml's solver time grows faster than the
#: square of the matrix (measured on random ternary matrices, 64 outputs, 2 vCPUs: 196 inputs
#: 5.6 s, 784 inputs did not finish in 10 minutes); a longer dot product is solved in blocks of
#: at most this many inputs whose partial sums meet in a balanced adder tree: common
#: subexpressions are only shared inside a block (+10 % adders on a 392 x 64 ternary matrix),
#: nothing changes for layers up to this size.
CMVM_MAX_ROWS = 128


def _fail(op, problem: str) -> TrigkitError:
    return TrigkitError(f"{op.name}: {problem} (RTL tracer)")


def _vars_of(arr) -> np.ndarray:
    return arr._vars


def _wrap(arr, vars_: np.ndarray):
    from da4ml.trace import FixedVariableArray

    return FixedVariableArray(vars_, arr.solver_options, hwconf=arr.hwconf)


def _round_half_even_var(s):
    """round(s), ties to even, for a da4ml variable ``s`` on a grid of 2**-k (k >= 0)."""
    if s.low == s.high:  # a constant
        return type(s).from_const(float(np.round(float(s.low))), hwconf=s.hwconf)
    if s.step >= 1:  # already on the integer grid: nothing to round
        return s
    lsb = float(s.step)  # 2**-k, or coarser where da4ml proved the low bits zero
    b = s.quantize(0, 1, 0)  # bit 0 of floor(s), i.e. q & 1 (two's complement wrap)
    t = s + b * lsb + (0.5 - lsb)
    k_, i_, _ = t.kif
    # floor: drops the fraction. No wrap: t lies inside its own format (k_, i_), and so does
    # floor(t) (da4ml clamps the requested i to i_ anyway)
    return t.quantize(k_, i_, 0)


def _quant(op, arr, exp: int):
    """QONNX Quant (ROUND = half to even, then clip) on integer-valued variables.

    The clip is applied before the rounding, on ``s = x * 2**-shift``: rounding is monotone
    and maps the integers lo and hi to themselves, so ``round(clip(s, lo, hi)) ==
    clip(round(s), lo, hi)`` exactly, and the rounding adder is only as wide as the clipped
    value (a few bits) instead of the accumulator."""
    a = op.attrs
    lo, hi = quant_range(a["bits"], bool(a.get("signed", 1)), bool(a.get("narrow", 0)))
    shift = a["exp"] - exp
    flat = _vars_of(arr).ravel()
    out = np.empty(flat.size, dtype=object)
    for n, v in enumerate(flat):
        s = v * 2.0**-shift  # a power-of-two scaling only moves the binary point (no logic)
        s = s.max_of(lo) if s.low < lo else s
        s = s.min_of(hi) if s.high > hi else s
        if shift > 0:
            s = _round_half_even_var(s)
        # da4ml's interval of a rounded value may be one step looser than [lo, hi] (it does
        # not know that the rounding of a clipped value stays inside), never off the grid
        if s.step < 1 or s.low < lo - 1 or s.high > hi + 1:  # pragma: no cover
            raise _fail(op, f"quantised range [{s.low}, {s.high}] step {s.step} is not on the "
                        f"integer grid [{lo}, {hi}]")
        out[n] = s
    return _wrap(arr, out.reshape(arr.shape)), a["exp"]


def _matmul_const(op, x, w: np.ndarray):
    """x (rows, K) or (K,) @ integer constant w (K, M): one da4ml CMVM per row.

    Like da4ml's own ``FixedVariableArray.matmul``, but a row whose inputs have the same ranges
    and latencies as an earlier row reuses that row's adder graph instead of solving the same
    CMVM problem again (all interior positions of a convolution): the solution depends on
    nothing else, and solving dominates the trace time of large convolutions."""
    from da4ml.cmvm import solve
    from da4ml.types import QInterval

    w = np.asarray(w, dtype=np.float64)
    if x.shape[-1] != w.shape[0]:
        raise _fail(op, f"inner dimensions differ: {x.shape} @ {w.shape}")
    rows = _vars_of(x).reshape(-1, w.shape[0])
    opts = dict(x.solver_options or {})
    opts.pop("offload_fn", None)
    opts.setdefault("adder_size", x.hwconf.adder_size)
    opts.setdefault("carry_size", x.hwconf.carry_size)
    n_blocks = -(-w.shape[0] // CMVM_MAX_ROWS)
    blocks = [(b[0], b[-1] + 1) for b in np.array_split(np.arange(w.shape[0]), n_blocks)]
    mats = [np.ascontiguousarray(w[a:b].astype(np.float32)) for a, b in blocks]
    cache: dict[tuple, Any] = {}
    out = []
    for row in rows:
        if any(v.low == v.high for v in row):  # constants (padding): da4ml's general path
            out.append(_vars_of(_wrap(x, row) @ w))
            continue
        partial = []
        for (a, b), mat in zip(blocks, mats, strict=True):
            qints = tuple(QInterval(float(v.low), float(v.high), float(v.step))
                          for v in row[a:b])
            lats = tuple(float(v.latency) for v in row[a:b])
            key = (a, qints, lats)
            sol = cache.get(key)
            if sol is None:
                sol = cache[key] = solve(mat, qintervals=list(qints), latencies=list(lats),
                                         **opts)
            partial.append(np.asarray(sol(row[a:b]), dtype=object))
        out.append(_sum_tree(partial))
    shape = x.shape[:-1] + (w.shape[1],)
    return _wrap(x, np.array(out, dtype=object).reshape(shape))


def _sum_tree(parts: list[np.ndarray]) -> np.ndarray:
    """Element-wise sum of equally shaped object arrays as a balanced adder tree."""
    while len(parts) > 1:
        nxt = [parts[n] + parts[n + 1] for n in range(0, len(parts) - 1, 2)]
        parts = nxt + ([parts[-1]] if len(parts) % 2 else [])
    return parts[0]


def _is_bit(v) -> bool:
    return v.low == 0 and v.high == 1 and v.step == 1 and v._factor > 0


def _max2(a, b):
    """max of two da4ml variables; a plain OR where both are single bits (0/1)."""
    if _is_bit(a) and _is_bit(b):
        return a | b
    return a.max_of(b)


def _max_tree(parts: list[np.ndarray]) -> np.ndarray:
    """Element-wise max of equally shaped object arrays as a balanced tree (log depth)."""
    while len(parts) > 1:
        nxt = []
        for n in range(0, len(parts) - 1, 2):
            a, b = parts[n].ravel(), parts[n + 1].ravel()
            nxt.append(np.array([_max2(u, v) for u, v in zip(a, b, strict=True)],
                                dtype=object).reshape(parts[n].shape))
        if len(parts) % 2:
            nxt.append(parts[-1])
        parts = nxt
    return parts[0]


def _maxpool(op, x):
    a = op.attrs
    kh, kw = a["kernel_shape"]
    sh, sw = a.get("strides", [kh, kw])
    h, w, _ = x.shape
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    if ho < 1 or wo < 1:
        raise _fail(op, f"pool window {kh}x{kw} larger than its input {h}x{w}")
    v = _vars_of(x)
    parts = [v[i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
             for i in range(kh) for j in range(kw)]
    return _wrap(x, _max_tree(parts))


def _conv(op, x, w):
    a = op.attrs
    kh, kw = a["kernel_shape"]
    sh, sw = a.get("strides", [1, 1])
    pads = a.get("pads", [0, 0, 0, 0])
    v = _vars_of(x)
    if any(pads):
        v = np.pad(v, ((pads[0], pads[2]), (pads[1], pads[3]), (0, 0)), constant_values=0)
        x = _wrap(x, v)  # zeros become da4ml constants (no logic)
    h, wd, c = x.shape
    cout = w.shape[0]
    if w.shape[1:] != (kh, kw, c):
        raise _fail(op, f"weights {w.shape} do not fit kernel {kh}x{kw} on {c} channels")
    ho, wo = (h - kh) // sh + 1, (wd - kw) // sw + 1
    if ho < 1 or wo < 1:
        raise _fail(op, f"kernel {kh}x{kw} larger than its input {h}x{wd}")
    cols = np.stack([_vars_of(x)[i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
                     for i in range(kh) for j in range(kw)], axis=2)  # (ho, wo, kh*kw, c)
    cols = _wrap(x, cols.reshape(ho * wo, kh * kw * c))
    wmat = w.reshape(cout, kh * kw * c).T  # rows ordered (i, j, c) like the columns
    return _matmul_const(op, cols, wmat).reshape(ho, wo, cout)


def _trace_quant(op, t, exp: int, graph: IntegerGraph, env: dict):
    return _quant(op, t, exp)


def _trace_bipolar(op, t, exp: int, graph: IntegerGraph, env: dict):
    """+1 where x >= 0, else -1: one minus twice the sign bit."""
    out = np.empty(t.shape, dtype=object)
    for idx, v in np.ndenumerate(_vars_of(t)):
        out[idx] = 1.0 - 2.0 * v.is_negative()
    return _wrap(t, out), int(op.attrs["exp"])


def _trace_avgpool(op, t, exp: int, graph: IntegerGraph, env: dict):
    """AveragePool (C, H, W) over 2**k elements: the window sum (adder tree), exponent - k."""
    kh, kw = op.attrs["kernel_shape"]
    sh, sw = op.attrs.get("strides", [1, 1])
    if t.ndim != 3:
        raise _fail(op, f"average pooling needs a (C, H, W) tensor, got shape {t.shape}")
    _, h, w = t.shape
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    if ho < 1 or wo < 1:
        raise _fail(op, f"pool window {kh}x{kw} larger than its input {h}x{w}")
    v = _vars_of(t)
    parts = [np.asarray(v[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw], dtype=object)
             for i in range(kh) for j in range(kw)]
    return _wrap(t, _sum_tree(parts)), exp - ((kh * kw).bit_length() - 1)


def _trace_relu(op, t, exp: int, graph: IntegerGraph, env: dict):
    return t.relu(), exp


def _trace_maxpool(op, t, exp: int, graph: IntegerGraph, env: dict):
    if t.ndim != 3:
        raise _fail(op, f"max-pool needs an (H, W, C) tensor, got shape {t.shape}")
    return _maxpool(op, t), exp


def _weights(op, graph: IntegerGraph):
    w = graph.constants.get(op.inputs[1])
    if w is None:
        raise _fail(op, f"weights {op.inputs[1]} are not a quantised constant")
    return w


def _trace_conv(op, t, exp: int, graph: IntegerGraph, env: dict):
    w = _weights(op, graph)
    if t.ndim != 3:
        raise _fail(op, f"convolution needs an (H, W, C) tensor, got {t.shape}")
    out = (_conv(op, t, w.ints), exp + w.exp)
    if len(op.inputs) > 2:  # a quantised bias, added on the finer grid
        out = _add(op, out, _constant(op, graph, op.inputs[2]))
    return out


def _constant(op, graph: IntegerGraph, name: str):
    c = graph.constants.get(name)
    if c is None:
        raise _fail(op, f"operand {name} is not a constant")
    return c


def _add(op, a: tuple, b, subtract: bool = False):
    """a + b (a - b) on the finer grid; ``a`` is (variables, exp), ``b`` the same or an
    IntTensor constant (broadcast like numpy / ONNX)."""
    (x, ex) = a
    if isinstance(b, tuple):
        y, ey = b
        e = min(ex, ey)
        xs, ys = _vars_of(x) * 2.0 ** (ex - e), _vars_of(y) * 2.0 ** (ey - e)
    else:
        e = min(ex, b.exp)
        xs = _vars_of(x) * 2.0 ** (ex - e)
        ys = (b.ints.astype(np.float64) * 2.0 ** (b.exp - e)).reshape(
            b.ints.shape[-x.ndim:] if b.ints.ndim > x.ndim else b.ints.shape)
    out = np.subtract(xs, ys) if subtract else np.add(xs, ys)
    return _wrap(x, np.asarray(out, dtype=object)), e


def _trace_add(op, t, exp: int, graph: IntegerGraph, env: dict):
    other = op.inputs[1]
    b = env[other] if other in env else _constant(op, graph, other)
    return _add(op, (t, exp), b, subtract=op.kind == "Sub")


def _affine_chain(op, t, exp: int, graph: IntegerGraph):
    """An affine chain and its Quant (e.g. batch norm + activation quantiser) as the step
    function it is on the integers: per element ``f(lo) + sum_t (f(t) - f(t - 1)) * [x >= t]``
    over the element's proven range, with ``f`` the reference's exact codes (proven equal to
    QONNX's). Each step is one comparator (the sign of ``x - t``); nothing is rounded, and no
    wide product is needed."""
    quant = op.attrs["chain_quant"]
    chain = [(m.kind, graph.constants[m.inputs[1]]) for m in op.attrs["chain"]]
    flat = _vars_of(t)
    bound = int(max(max(abs(float(v.low)), abs(float(v.high))) for v in flat.ravel()))
    x, codes = affine_chain_codes(chain, quant, exp, bound)
    # the constants broadcast along the trailing axes (numpy / ONNX rules): align the element
    # index with the codes' axes after the first (extra leading axes of the constants are 1)
    extra = codes.ndim - 1 - flat.ndim
    out = np.empty(flat.shape, dtype=object)
    for idx in np.ndindex(flat.shape):
        v = flat[idx]
        aligned = (0,) * max(extra, 0) + idx[max(-extra, 0):]
        col = codes[(slice(None),) + tuple(i if codes.shape[1 + k] > 1 else 0
                                           for k, i in enumerate(aligned))]
        lo, hi = int(v.low), int(v.high)
        f = col[lo + bound:hi + bound + 1]
        acc = type(v).from_const(float(f[0]), hwconf=v.hwconf)
        for step in np.flatnonzero(np.diff(f)) + 1:
            ge = 1.0 - (v - float(lo + step)).is_negative()
            acc = acc + ge * float(f[step] - f[step - 1])
        out[idx] = acc
    return _wrap(t, out), int(quant.attrs["exp"])


def _trace_mul(op, t, exp: int, graph: IntegerGraph, env: dict):
    c = _constant(op, graph, op.inputs[1])
    if op.kind == "Div":
        c = inverse_constant(c, op.name)
    ints = c.ints.reshape(c.ints.shape[-t.ndim:] if c.ints.ndim > t.ndim else c.ints.shape)
    return _wrap(t, np.asarray(_vars_of(t) * ints.astype(np.float64), dtype=object)), exp + c.exp


def _trace_matmul(op, t, exp: int, graph: IntegerGraph, env: dict):
    w = _weights(op, graph)
    if w.ints.ndim != 2:
        raise _fail(op, f"MatMul weights must be a matrix, got {w.ints.shape}")
    return _matmul_const(op, t.reshape(-1) if t.ndim != 1 else t, w.ints), exp + w.exp


def _trace_flatten(op, t, exp: int, graph: IntegerGraph, env: dict):
    if op.attrs.get("axis", 1) != 1:
        raise _fail(op, f"Flatten axis {op.attrs.get('axis')} (only 1, after the batch)")
    return t.reshape(-1), exp


def _trace_reshape(op, t, exp: int, graph: IntegerGraph, env: dict):
    target = list(op.attrs["shape"])
    if not target or target[0] not in (1, -1, 0):
        raise _fail(op, f"Reshape to {target} changes the batch axis")
    return t.reshape(*[int(d) for d in target[1:]] or [-1]), exp


def _trace_transpose(op, t, exp: int, graph: IntegerGraph, env: dict):
    perm = list(op.attrs.get("perm", []))
    if not perm or perm[0] != 0:
        raise _fail(op, f"Transpose perm {perm} moves the batch axis")
    return t.transpose([p - 1 for p in perm[1:]]), exp


#: How each op of trigkit.firmware.ops is traced: (op, tensor, exponent, graph, traced tensors)
#: -> (out, exp).
_TRACERS = {"Quant": _trace_quant, "BipolarQuant": _trace_bipolar, "Relu": _trace_relu,
            "MaxPool": _trace_maxpool, "Conv": _trace_conv, "MatMul": _trace_matmul,
            "Flatten": _trace_flatten, "Reshape": _trace_reshape, "Transpose": _trace_transpose,
            "Add": _trace_add, "Sub": _trace_add, "Mul": _trace_mul, "Div": _trace_mul,
            "AveragePool": _trace_avgpool}
check_handlers("the RTL tracer", _TRACERS)


def trace_graph(graph: IntegerGraph, input_bits: int = 1, solver_options: dict | None = None,
                input_signed: bool = False, value_bits: list[int] | None = None):
    """Trace ``graph`` with da4ml; returns ``(comb, out_exp)``.

    ``comb`` is da4ml's ``CombLogic``: ``comb.predict(x)`` on input codes flattened in the
    graph's input layout (without the batch axis, C order) gives the reference's integers, and
    ``value = int * 2**out_exp``. The input is declared as ``input_bits``-bit integer codes on
    the input quantiser's grid (value = code * 2**graph.input_exp), unsigned (1 bit for hit
    images, the narrowest exact format for values 0/1) or
    two's complement with ``input_signed``. ``value_bits`` (unsigned inputs only: a fixed front
    end's guarantee, one entry per element) narrows each element's range inside the logic while
    the port stays ``input_bits`` wide: the unused upper bits are dropped (e.g. a hit flag's
    adders take 1 bit, not the code width).
    """
    from da4ml.trace import FixedVariableArrayInput, comb_trace

    if input_bits < 1 + int(input_signed):
        raise TrigkitError(f"input_bits must be >= {1 + int(input_signed)}, got {input_bits}")
    shape = tuple(int(d) for d in graph.firmware_input_shape[1:])
    if not shape or any(d < 1 for d in shape):
        raise TrigkitError(f"graph input shape {list(graph.input_shape)} has no fixed size")
    inp = FixedVariableArrayInput(shape, solver_options=solver_options)
    x = inp.quantize(k=int(input_signed), i=input_bits - int(input_signed), f=0)
    if value_bits is not None:
        bits = np.asarray(value_bits, dtype=np.int64)
        if input_signed or bits.size != math.prod(shape) or bits.min() < 1 or (
                bits.max() > input_bits):
            raise TrigkitError(f"value_bits must give 1..{input_bits} bits for each of the "
                               f"{math.prod(shape)} unsigned inputs")
        x = x.quantize(k=0, i=bits.reshape(shape), f=0)
    # the input port carries the input quantiser's integer codes: value = code * 2**input_exp
    env: dict[str, tuple[Any, int]] = {graph.firmware_input: (x, graph.input_exp)}
    done: set[str] = set()  # outputs of affine chains traced as one step
    for op in graph.firmware_ops:
        if op.output in done:
            continue
        missing = [i for i in op.inputs[:1] if i not in env]
        if missing:
            raise _fail(op, f"input {missing[0]} is not computed by an earlier node")
        t, exp = env[op.inputs[0]]
        if "chain_quant" in op.attrs:
            quant = op.attrs["chain_quant"]
            env[quant.output] = _affine_chain(op, t, exp, graph)
            done.update(m.output for m in op.attrs["chain"])
            done.add(quant.output)
        elif op.kind in _TRACERS:
            env[op.output] = _TRACERS[op.kind](op, t, exp, graph, env)
        else:
            raise _fail(op, f"op {op.kind} is not supported by the RTL tracer; supported: "
                        + ", ".join(_TRACERS))
    if graph.firmware_output not in env:
        raise TrigkitError(f"graph output {graph.firmware_output} is not computed by any node")
    out, out_exp = env[graph.firmware_output]
    comb = comb_trace(inp, out.ravel(), keep_dead_inputs=True)
    return comb, out_exp


def count_trace_mismatches(comb, ref: ReferenceModel, vectors_path: Path,
                           input_bits: int = 1, input_signed: bool = False) -> tuple[int, int]:
    """(mismatching vectors, vectors) of ``comb.predict`` against vectors.npz's ``y_int``."""
    v = load_vectors(vectors_path)
    return _mismatches(comb, ref, v["x"], v["y_int"], input_bits, input_signed,
                       str(vectors_path))


def count_code_mismatches(comb, ref: ReferenceModel, codes: np.ndarray, input_bits: int = 1,
                          input_signed: bool = False) -> tuple[int, int]:
    """(mismatching inputs, inputs) of ``comb.predict`` against the reference on input codes."""
    y_int, _ = ref.predict_codes(codes)
    return _mismatches(comb, ref, codes, y_int, input_bits, input_signed, "input codes")


def _mismatches(comb, ref: ReferenceModel, codes: np.ndarray, y_int: np.ndarray,
                input_bits: int, input_signed: bool, what: str) -> tuple[int, int]:
    x = ref.firmware_layout(codes).reshape(len(codes), -1)
    check_input_range(x.astype(np.int64), input_bits, input_signed, f"the RTL input ({what})")
    y = comb.predict(x.astype(np.float64))
    y_int = np.asarray(y_int).reshape(len(y), -1)
    if y.shape != y_int.shape:
        raise TrigkitError(f"traced logic gives {y.shape[1]} outputs, {what} has "
                           f"{y_int.shape[1]}")
    return int(np.any(y != y_int, axis=1).sum()), len(y)
