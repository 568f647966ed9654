"""The stages of the main job, one function each, taking a card and returning what they wrote:

=========  ===========================================  ====================================
stage      function                                     writes
=========  ===========================================  ====================================
train      :func:`.training.train_stage`                build/NAME/{best,last}.pt, report
export     :func:`.firmware.export_stage`               model.qonnx.onnx, vectors.npz, hls/NAME
rtl        :func:`.firmware.rtl_stage`                  hw/NAME (Verilog, rtl.json)
sim        :func:`.firmware.sim_stage`                  sim/sim_build_NAME, cocotb results
synth      :func:`.firmware.synth_stage`                Yosys/Vivado resources in report.json
report     :func:`.report.report_stage`                 build/NAME/report.md, build/summary.*
=========  ===========================================  ====================================

Every stage merges its results and its wall time (``timings_s``) into build/NAME/report.json.
:mod:`.studies` holds the detector commands (simulate, show, baseline). The CLI only parses
options, calls these functions and prints the lines they report through ``say``.
"""
