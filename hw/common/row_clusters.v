// row_clusters: the fixed integer front end of the hit-feature models (hand-written).
//
// For each of ROWS rows of WIDTH binary inputs: twice the centre of the lowest cluster (run of
// adjacent set columns) as left = first set column + last column of that run, twice the centre
// of the highest cluster as right = first column of that run + last set column, a hit flag, and
// log2 of the separation s = right - left + 1 as 16 e + (16 s >> e) - 16 with e = floor(log2 s)
// (Mitchell's piecewise-linear log, 4 fractional bits); a row without hits gives 0 for all four.
// The integer twin is trigkit.learn.frontend.row_clusters_numpy; sim/tb_row_clusters.py checks
// the two agree.
//
//   hits      ROWS*WIDTH bits, element p = row*WIDTH + column at hits[p]
//   features  4*ROWS elements of FEAT_BITS bits, element p at features[p*FEAT_BITS +: FEAT_BITS]:
//             left_0 .. left_{ROWS-1}, right_.., hit_.., logsep_..
//   IDX_BITS  bits of a column index (2^IDX_BITS >= WIDTH); FEAT_BITS >= IDX_BITS + 1 holds a
//             doubled centre and the log
//
// Fully pipelined, initiation interval 1, latency 4 cycles. Four priority encoders per row: the
// lowest set column and the lowest run end (h & ~(h >> 1)), the highest set column and the
// highest run start (h & ~(h << 1)); each over 16-column chunks, then groups of 8 chunks, then
// the groups plus the two sums, then the separation and its log (each stage registered).
`timescale 1 ns / 1 ps
`default_nettype none

module row_clusters #(
    parameter integer ROWS = 9,
    parameter integer WIDTH = 384,
    parameter integer IDX_BITS = 9,
    parameter integer FEAT_BITS = 10
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
    localparam integer POS_BITS = IDX_BITS + 1;            // a doubled centre

    // Rows padded with zero columns to whole groups of chunks; the run ends and run starts.
    wire [ROWS*PW-1:0] padded, ends, starts;
    genvar gr;
    generate
        for (gr = 0; gr < ROWS; gr = gr + 1) begin : pad
            wire [PW-1:0] row = padded[gr*PW +: PW];
            assign padded[gr*PW +: WIDTH] = hits[gr*WIDTH +: WIDTH];
            if (PW > WIDTH) begin : zeros
                assign padded[gr*PW + WIDTH +: PW - WIDTH] = {(PW - WIDTH){1'b0}};
            end
            assign ends[gr*PW +: PW]   = row & ~(row >> 1);
            assign starts[gr*PW +: PW] = row & ~(row << 1);
        end
    endgenerate

    // Per encoder m: 0 lowest set column, 1 lowest run end, 2 highest set column, 3 highest
    // run start. Level 1: per chunk, any set bit and its position within the chunk.
    reg [4*ROWS*NCP-1:0]   c_any;
    reg [4*ROWS*NCP*4-1:0] c_pos;
    // Level 2: per group of chunks, any set bit and its column.
    reg [4*ROWS*NG-1:0]          g_any;
    reg [4*ROWS*NG*IDX_BITS-1:0] g_pos;

    // Each stage declares its own loop variables and temporaries (named blocks), so no
    // variable is driven from two always blocks.
    always @(posedge clk) begin : level1
        integer m, r, c, b;
        reg [CHUNK-1:0] chunk;
        reg [3:0]       pos4;
        for (m = 0; m < 4; m = m + 1)
            for (r = 0; r < ROWS; r = r + 1)
                for (c = 0; c < NCP; c = c + 1) begin
                    case (m)
                        0, 2:    chunk = padded[r*PW + c*CHUNK +: CHUNK];
                        1:       chunk = ends[r*PW + c*CHUNK +: CHUNK];
                        default: chunk = starts[r*PW + c*CHUNK +: CHUNK];
                    endcase
                    pos4 = 4'd0;
                    if (m < 2) begin
                        for (b = CHUNK - 1; b >= 0; b = b - 1)
                            if (chunk[b]) pos4 = b[3:0];
                    end else begin
                        for (b = 0; b < CHUNK; b = b + 1)
                            if (chunk[b]) pos4 = b[3:0];
                    end
                    c_any[(m*ROWS + r)*NCP + c]        <= |chunk;
                    c_pos[((m*ROWS + r)*NCP + c)*4 +: 4] <= pos4;
                end
    end

    always @(posedge clk) begin : level2
        integer m, r, c, g, col;
        reg [IDX_BITS-1:0] pos;
        reg                any;
        for (m = 0; m < 4; m = m + 1)
            for (r = 0; r < ROWS; r = r + 1)
                for (g = 0; g < NG; g = g + 1) begin
                    pos = {IDX_BITS{1'b0}};
                    any = 1'b0;
                    for (c = 0; c < GROUP; c = c + 1)
                        // lowest: the last match counting down wins; highest: counting up
                        if (c_any[(m*ROWS + r)*NCP + g*GROUP + (m < 2 ? GROUP - 1 - c : c)])
                        begin
                            col = (g*GROUP + (m < 2 ? GROUP - 1 - c : c)) * CHUNK + {28'd0,
                                  c_pos[((m*ROWS + r)*NCP + g*GROUP
                                         + (m < 2 ? GROUP - 1 - c : c))*4 +: 4]};
                            pos = col[IDX_BITS-1:0];
                            any = 1'b1;
                        end
                    g_any[(m*ROWS + r)*NG + g]                    <= any;
                    g_pos[((m*ROWS + r)*NG + g)*IDX_BITS +: IDX_BITS] <= pos;
                end
    end

    // Level 3: across the groups of a row, then the doubled centres.
    reg [ROWS*POS_BITS-1:0] f_left, f_right;
    reg [ROWS-1:0]          f_any;
    always @(posedge clk) begin : level3
        integer m, r, g;
        reg [IDX_BITS-1:0] pos;
        reg                any;
        reg [4*IDX_BITS-1:0] found;
        for (r = 0; r < ROWS; r = r + 1) begin
            for (m = 0; m < 4; m = m + 1) begin
                pos = {IDX_BITS{1'b0}};
                for (g = 0; g < NG; g = g + 1)
                    if (g_any[(m*ROWS + r)*NG + (m < 2 ? NG - 1 - g : g)])
                        pos = g_pos[((m*ROWS + r)*NG + (m < 2 ? NG - 1 - g : g))*IDX_BITS
                                    +: IDX_BITS];
                found[m*IDX_BITS +: IDX_BITS] = pos;
            end
            any = 1'b0;
            for (g = 0; g < NG; g = g + 1)
                any = any | g_any[r*NG + g];
            f_left[r*POS_BITS +: POS_BITS]  <= any ? {1'b0, found[0 +: IDX_BITS]}
                                                     + {1'b0, found[IDX_BITS +: IDX_BITS]}
                                                   : {POS_BITS{1'b0}};
            f_right[r*POS_BITS +: POS_BITS] <= any ? {1'b0, found[2*IDX_BITS +: IDX_BITS]}
                                                     + {1'b0, found[3*IDX_BITS +: IDX_BITS]}
                                                   : {POS_BITS{1'b0}};
            f_any[r]                        <= any;
        end
    end

    // Level 4: the log separation (leading one, then the next 4 bits); features registered.
    always @(posedge clk) begin : level4
        integer r, sep, e, k, logv;
        for (r = 0; r < ROWS; r = r + 1) begin
            sep = {{(32 - POS_BITS){1'b0}}, f_right[r*POS_BITS +: POS_BITS]}
                - {{(32 - POS_BITS){1'b0}}, f_left[r*POS_BITS +: POS_BITS]} + 1;
            e = 0;
            for (k = 1; k <= POS_BITS + 1; k = k + 1)
                if (sep >= (1 << k)) e = k;
            logv = f_any[r] ? (e * 16 + ((sep * 16) >> e) - 16) : 0;
            features[r*FEAT_BITS +: FEAT_BITS] <=
                {{(FEAT_BITS - POS_BITS){1'b0}}, f_left[r*POS_BITS +: POS_BITS]};
            features[(ROWS + r)*FEAT_BITS +: FEAT_BITS] <=
                {{(FEAT_BITS - POS_BITS){1'b0}}, f_right[r*POS_BITS +: POS_BITS]};
            features[(2*ROWS + r)*FEAT_BITS +: FEAT_BITS] <= {{(FEAT_BITS - 1){1'b0}}, f_any[r]};
            features[(3*ROWS + r)*FEAT_BITS +: FEAT_BITS] <= logv[FEAT_BITS-1:0];
        end
    end
endmodule

`default_nettype wire
