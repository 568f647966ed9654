"""From a trained quantised network to proven firmware.

Stages, each checked bit-exact against the integer reference on the same vectors:
:mod:`.export` (Brevitas -> cleaned QONNX, test vectors), :mod:`.reference` (the pure-integer
golden model), :mod:`.hls` (hls4ml C++ and its C simulation), :mod:`.rtl` (da4ml pipelined
Verilog), :mod:`.cocotb_runner` (cocotb testbenches under Verilator), :mod:`.synth` (Yosys,
Vivado). :mod:`.ops` declares the supported ops once for the three integer paths,
:mod:`.layout` the contract of a generated design, :mod:`.fixedpoint` the shared arithmetic.

Brevitas, QONNX, onnx, hls4ml, da4ml and cocotb are imported inside the functions that use them:
each takes a second or more to import, and most commands need none of them.
"""
