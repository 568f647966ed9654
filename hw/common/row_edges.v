// row_edges: the fixed integer front end of the hit-feature models (hand-written).
//
// For each of ROWS rows of WIDTH binary inputs: the first (lowest) and the last (highest) set
// column, a hit flag, and log2 of the span s = last - first + 1 as 16 e + (16 s >> e) - 16 with
// e = floor(log2 s) (Mitchell's piecewise-linear log, 4 fractional bits); a row without hits
// gives 0 for all four. The integer twin is trigkit.learn.frontend.row_edges_numpy;
// sim/tb_row_edges.py checks the two agree.
//
//   hits      ROWS*WIDTH bits, element p = row*WIDTH + column at hits[p]
//   features  4*ROWS elements of FEAT_BITS bits, element p at features[p*FEAT_BITS +: FEAT_BITS]:
//             first_0 .. first_{ROWS-1}, last_.., hit_.., logspan_..
//   IDX_BITS  bits of a column index (2^IDX_BITS >= WIDTH); FEAT_BITS >= IDX_BITS holds the log
//
// Fully pipelined, initiation interval 1, latency 4 cycles: priority encoders over 16-column
// chunks, then over groups of 8 chunks, then over the groups, then the log (each registered).
`timescale 1 ns / 1 ps
`default_nettype none

module row_edges #(
    parameter integer ROWS = 9,
    parameter integer WIDTH = 384,
    parameter integer IDX_BITS = 9,
    parameter integer FEAT_BITS = 9
) (
    input  wire                         clk,
    input  wire [ROWS*WIDTH-1:0]        hits,
    output reg  [4*ROWS*FEAT_BITS-1:0]  features
);
    localparam integer CHUNK = 16;
    localparam integer GROUP = 8;
    localparam integer NC = (WIDTH + CHUNK - 1) / CHUNK;   // chunks per row
    localparam integer NG = (NC + GROUP - 1) / GROUP;      // groups per row
    localparam integer NCP = NG * GROUP;                   // chunks per row, padded
    localparam integer PW = NCP * CHUNK;                   // padded row width

    // Rows padded with zero columns to whole groups of chunks.
    wire [ROWS*PW-1:0] padded;
    genvar gr;
    generate
        for (gr = 0; gr < ROWS; gr = gr + 1) begin : pad
            assign padded[gr*PW +: WIDTH] = hits[gr*WIDTH +: WIDTH];
            if (PW > WIDTH) begin : zeros
                assign padded[gr*PW + WIDTH +: PW - WIDTH] = {(PW - WIDTH){1'b0}};
            end
        end
    endgenerate

    // Level 1: per chunk, any hit and the lowest / highest set bit within the chunk.
    reg [ROWS*NCP-1:0]   c_any;
    reg [ROWS*NCP*4-1:0] c_lo, c_hi;
    // Level 2: per group of chunks, any hit and the lowest / highest column of the row.
    reg [ROWS*NG-1:0]          g_any;
    reg [ROWS*NG*IDX_BITS-1:0] g_lo, g_hi;

    integer r, c, b, g, col;
    reg [CHUNK-1:0]    chunk;
    reg [3:0]          lo4, hi4;
    reg [IDX_BITS-1:0] lo, hi;
    reg                any;

    always @(posedge clk) begin
        for (r = 0; r < ROWS; r = r + 1) begin
            for (c = 0; c < NCP; c = c + 1) begin
                chunk = padded[r*PW + c*CHUNK +: CHUNK];
                lo4 = 4'd0;
                hi4 = 4'd0;
                for (b = CHUNK - 1; b >= 0; b = b - 1)
                    if (chunk[b]) lo4 = b[3:0];
                for (b = 0; b < CHUNK; b = b + 1)
                    if (chunk[b]) hi4 = b[3:0];
                c_any[r*NCP + c]        <= |chunk;
                c_lo[(r*NCP + c)*4 +: 4] <= lo4;
                c_hi[(r*NCP + c)*4 +: 4] <= hi4;
            end
        end
    end

    always @(posedge clk) begin
        for (r = 0; r < ROWS; r = r + 1) begin
            for (g = 0; g < NG; g = g + 1) begin
                lo = {IDX_BITS{1'b0}};
                hi = {IDX_BITS{1'b0}};
                any = 1'b0;
                for (c = GROUP - 1; c >= 0; c = c - 1)
                    if (c_any[r*NCP + g*GROUP + c]) begin
                        col = (g*GROUP + c) * CHUNK + {28'd0, c_lo[(r*NCP + g*GROUP + c)*4 +: 4]};
                        lo = col[IDX_BITS-1:0];
                    end
                for (c = 0; c < GROUP; c = c + 1)
                    if (c_any[r*NCP + g*GROUP + c]) begin
                        col = (g*GROUP + c) * CHUNK + {28'd0, c_hi[(r*NCP + g*GROUP + c)*4 +: 4]};
                        hi = col[IDX_BITS-1:0];
                        any = 1'b1;
                    end
                g_any[r*NG + g]                  <= any;
                g_lo[(r*NG + g)*IDX_BITS +: IDX_BITS] <= lo;
                g_hi[(r*NG + g)*IDX_BITS +: IDX_BITS] <= hi;
            end
        end
    end

    // Level 3: across the groups of a row.
    reg [ROWS*IDX_BITS-1:0] f_lo, f_hi;
    reg [ROWS-1:0]          f_any;
    always @(posedge clk) begin
        for (r = 0; r < ROWS; r = r + 1) begin
            lo = {IDX_BITS{1'b0}};
            hi = {IDX_BITS{1'b0}};
            any = 1'b0;
            for (g = NG - 1; g >= 0; g = g - 1)
                if (g_any[r*NG + g]) lo = g_lo[(r*NG + g)*IDX_BITS +: IDX_BITS];
            for (g = 0; g < NG; g = g + 1)
                if (g_any[r*NG + g]) begin
                    hi = g_hi[(r*NG + g)*IDX_BITS +: IDX_BITS];
                    any = 1'b1;
                end
            f_lo[r*IDX_BITS +: IDX_BITS] <= lo;
            f_hi[r*IDX_BITS +: IDX_BITS] <= hi;
            f_any[r]                     <= any;
        end
    end

    // Level 4: the log span (leading one of the span, then the next 4 bits); features registered.
    integer span, e, k, logv;
    always @(posedge clk) begin
        for (r = 0; r < ROWS; r = r + 1) begin
            span = {{(32 - IDX_BITS){1'b0}}, f_hi[r*IDX_BITS +: IDX_BITS]}
                 - {{(32 - IDX_BITS){1'b0}}, f_lo[r*IDX_BITS +: IDX_BITS]} + 1;
            e = 0;
            for (k = 1; k <= IDX_BITS + 1; k = k + 1)
                if (span >= (1 << k)) e = k;
            logv = f_any[r] ? (e * 16 + ((span * 16) >> e) - 16) : 0;
            features[r*FEAT_BITS +: FEAT_BITS] <=
                {{(FEAT_BITS - IDX_BITS){1'b0}}, f_lo[r*IDX_BITS +: IDX_BITS]};
            features[(ROWS + r)*FEAT_BITS +: FEAT_BITS] <=
                {{(FEAT_BITS - IDX_BITS){1'b0}}, f_hi[r*IDX_BITS +: IDX_BITS]};
            features[(2*ROWS + r)*FEAT_BITS +: FEAT_BITS] <= {{(FEAT_BITS - 1){1'b0}}, f_any[r]};
            features[(3*ROWS + r)*FEAT_BITS +: FEAT_BITS] <= logv[FEAT_BITS-1:0];
        end
    end
endmodule

`default_nettype wire
