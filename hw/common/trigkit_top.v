// trigkit_top: the model-independent top level of every trigkit network (hand-written).
//
// Ports (identical for every model; only the widths differ, see hw/<model>/rtl.json):
//   clk        rising-edge clock
//   rst        synchronous, active-high reset of the valid pipeline only: on every rising edge
//              with rst = 1 all events in flight are dropped and in_valid is ignored, so
//              out_valid is 0 from the next edge until an event accepted after the reset has
//              gone through the pipeline. The datapath has no reset (it needs none).
//   in_valid   in_data carries an event this cycle (sampled on the rising edge)
//   in_data    IN_BITS: the flattened input image (layout in rtl.json "input")
//   out_valid  out_data carries the result of the event accepted LATENCY cycles earlier
//   out_data   OUT_BITS: the flattened outputs (layout in rtl.json "output"); don't care
//              while out_valid = 0
// Initiation interval 1: a new event may be presented on every clock cycle.
//
// Parameters must be the values in rtl.json; the generated trigkit_core of the model
// refuses to elaborate with any others. trigkit_core is hw/<model>/src/trigkit_core.v.
`timescale 1 ns / 1 ps
`default_nettype none

module trigkit_top #(
    parameter integer IN_BITS = 1,
    parameter integer OUT_BITS = 1,
    parameter integer LATENCY = 1
) (
    input  wire                clk,
    input  wire                rst,
    input  wire                in_valid,
    input  wire [IN_BITS-1:0]  in_data,
    output wire                out_valid,
    output wire [OUT_BITS-1:0] out_data
);
    // The fully pipelined network: out_data(t + LATENCY) = f(in_data(t)).
    trigkit_core #(
        .IN_BITS(IN_BITS),
        .OUT_BITS(OUT_BITS),
        .LATENCY(LATENCY)
    ) core (
        .clk(clk),
        .in_data(in_data),
        .out_data(out_data)
    );

    // The valid bit travels beside the data through LATENCY registers.
    reg [LATENCY-1:0] valid_pipe;
    integer i;
    always @(posedge clk) begin
        valid_pipe[0] <= in_valid & ~rst;
        for (i = 1; i < LATENCY; i = i + 1)
            valid_pipe[i] <= valid_pipe[i-1] & ~rst;
    end
    assign out_valid = valid_pipe[LATENCY-1];
endmodule

`default_nettype wire
