"""cocotb testbench of hw/common/trigkit_top.v around one generated network.

Inputs (environment variable, or the plusarg of the same name in lower case):
  TRIGKIT_RTL_JSON   hw/<model>/rtl.json (parameters, latency, bit layouts)
  TRIGKIT_VECTORS    vectors.npz (x, y_int) of the same model
  TRIGKIT_RESULTS    json file the tests write their results into (one section per test)
  TRIGKIT_MAX_VECTORS, TRIGKIT_GAP_VECTORS, TRIGKIT_RESET_VECTORS: how many vectors each test
                     drives (default: all, 400, 200)
  TRIGKIT_SEED       seed of the random gaps and of the junk driven while in_valid is 0

Time is counted in clock cycles: cycle t is the rising edge that samples the inputs (and
would sample the outputs downstream). Inputs are driven and outputs read at the falling edge
before it. A result appears at cycle t_in + LATENCY.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from trigkit.firmware.layout import graph_layout, pack_inputs, unpack_outputs


def _setting(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, cocotb.plusargs.get(name.lower(), default))


class Bench:
    """The design, its layout and the test vectors."""

    def __init__(self, dut):
        self.dut = dut
        self.info = json.loads(Path(_setting("TRIGKIT_RTL_JSON")).read_text())
        v = np.load(_setting("TRIGKIT_VECTORS"))
        x, self.y = v["x"], v["y_int"].reshape(len(v["x"]), -1)
        self.latency = int(self.info["latency_cycles"])
        x = graph_layout(x, tuple(self.info["input"]["shape"]))  # rtl.json packing order
        self.packed = pack_inputs(x.reshape(len(x), -1), self.info["input"]["element_bits"],
                                  bool(self.info["input"].get("signed", False)))
        self.rng = random.Random(int(_setting("TRIGKIT_SEED", "1")))
        self.in_bits = int(self.info["parameters"]["IN_BITS"])

    def count(self, name: str, default: int) -> int:
        n = int(_setting(name, str(default)))
        return len(self.packed) if n <= 0 else min(n, len(self.packed))

    async def start(self):
        """Clock (4 ns period in simulation) and a 3-cycle reset with in_valid low."""
        Clock(self.dut.clk, 4, unit="ns").start(start_high=False)
        self.dut.rst.value = 1
        self.dut.in_valid.value = 0
        self.dut.in_data.value = 0
        for _ in range(3):
            await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0

    async def run(self, schedule: list[tuple[int, int, int | None]]) -> list[tuple[int, int]]:
        """Drive ``schedule`` (rst, in_valid, vector index or None) one entry per cycle, then
        drain; returns the (cycle, out_data) of every cycle with out_valid = 1."""
        dut, seen = self.dut, []
        for t in range(len(schedule) + self.latency + 4):
            await FallingEdge(dut.clk)
            if int(dut.out_valid.value) == 1:
                seen.append((t, int(dut.out_data.value.to_unsigned())))
            rst, valid, ev = schedule[t] if t < len(schedule) else (0, 0, None)
            dut.rst.value = rst
            dut.in_valid.value = valid
            dut.in_data.value = (self.packed[ev] if ev is not None
                                 else self.rng.getrandbits(self.in_bits))  # junk when invalid
        return seen

    def expected(self, schedule) -> dict[int, int]:
        """cycle -> vector index of every result the specification promises: an event sampled
        with in_valid = 1 and rst = 0 at cycle t comes out at t + LATENCY unless rst is 1 at
        one of the cycles t+1 .. t+LATENCY-1 (reset empties the pipeline)."""
        rst = [r for r, _, _ in schedule] + [0] * (self.latency + 4)
        out = {}
        for t, (r, valid, ev) in enumerate(schedule):
            if valid and not r and not any(rst[t + 1:t + self.latency]):
                out[t + self.latency] = ev
        return out

    def compare(self, schedule, seen) -> dict:
        exp = self.expected(schedule)
        got = dict(seen)
        spurious = sorted(set(got) - set(exp))
        missing = sorted(set(exp) - set(got))
        both = sorted(set(exp) & set(got))
        words = unpack_outputs([got[t] for t in both], self.info["output"])
        want = self.y[[exp[t] for t in both]] if both else self.y[:0]
        bad = int(np.any(words != want, axis=1).sum()) if both else 0
        if bad:
            first = both[int(np.argmax(np.any(words != want, axis=1)))]
            self.dut._log.error("vector %d: got %s, want %s", exp[first],
                                words[both.index(first)], self.y[exp[first]])
        return {"vectors": len(exp), "compared": len(both), "mismatches": bad + len(missing),
                "missing": len(missing), "spurious_valid": len(spurious),
                "cycles": len(schedule)}


def _write(section: str, result: dict) -> None:
    path = Path(_setting("TRIGKIT_RESULTS", "trigkit_results.json"))
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[section] = result
    path.write_text(json.dumps(data, indent=2) + "\n")


def _check(result: dict) -> None:
    assert result["mismatches"] == 0, result
    assert result["spurious_valid"] == 0, result
    assert result["compared"] == result["vectors"] > 0, result


@cocotb.test()
async def stream(dut):
    """All vectors back to back, one per cycle: every output bit, latency and II."""
    b = Bench(dut)
    await b.start()
    n = b.count("TRIGKIT_MAX_VECTORS", 0)
    schedule = [(0, 1, i) for i in range(n)]
    seen = await b.run(schedule)
    res = b.compare(schedule, seen)
    # measured independently of the promise: first input at cycle 0, first result at cycle L
    res["latency_cycles"] = seen[0][0] if seen else None
    cycles = [t for t, _ in seen]
    gaps = np.diff(cycles) if len(cycles) > 1 else np.array([1])
    res["ii_cycles"] = int(gaps.max()) if np.all(gaps == gaps[0]) else float(np.mean(gaps))
    _write("stream", res)
    _check(res)
    assert res["latency_cycles"] == b.latency, res
    assert res["ii_cycles"] == 1, res


@cocotb.test()
async def random_gaps(dut):
    """in_valid low on random cycles (junk on in_data meanwhile): results in order, no extra
    out_valid, each one LATENCY cycles after its input."""
    b = Bench(dut)
    await b.start()
    n = b.count("TRIGKIT_GAP_VECTORS", 400)
    schedule, i = [], 0
    while i < n:
        if b.rng.random() < 0.4:
            schedule.append((0, 0, None))
        else:
            schedule.append((0, 1, i))
            i += 1
    res = b.compare(schedule, await b.run(schedule))
    res["idle_cycles"] = len(schedule) - n
    _write("random_gaps", res)
    _check(res)


@cocotb.test()
async def reset_mid_stream(dut):
    """rst for 3 cycles in the middle of a back-to-back stream (in_valid kept high): events in
    flight and those offered during reset are dropped, no spurious out_valid, and every event
    after the reset comes out correct."""
    b = Bench(dut)
    await b.start()
    n = b.count("TRIGKIT_RESET_VECTORS", 200)
    at = min(n // 2, b.latency + 5)  # results of the first events come out before the reset
    schedule = [(1 if at <= t < at + 3 else 0, 1, t) for t in range(n)]
    seen = await b.run(schedule)
    res = b.compare(schedule, seen)
    res["reset_cycles"] = [at, at + 3]
    res["dropped"] = n - res["vectors"]
    # results sampled at cycle <= at left before the reset; then silence until the first event
    # accepted after the reset (cycle at + 3) comes out
    after = [t for t, _ in seen if t > at]
    res["first_valid_after_reset"] = after[0] if after else None
    res["valid_during_flush"] = sum(1 for t in after if t < at + 3 + b.latency)
    _write("reset_mid_stream", res)
    _check(res)
    assert res["valid_during_flush"] == 0, res
    assert res["first_valid_after_reset"] == at + 3 + b.latency, res
