// Tiled matmul, forward and backward (tinygpt.h: W is [OC, C], out = x @ W^T + b; backward
// ACCUMULATES into dx, dW, db). 16x16 output tiles through workgroup memory; every load and
// store is bounds-checked, so N, C, OC need not be multiples of the tile.
struct Params { N: u32, C: u32, OC: u32, has_b: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> W: array<f32>;
@group(0) @binding(4) var<storage, read> b: array<f32>;

const TS: u32 = 16u;
var<workgroup> ta: array<array<f32, 16>, 16>;
var<workgroup> tb: array<array<f32, 16>, 16>;

// out[n, o] = sum_c x[n, c] W[o, c] (+ b[o]); workgroup (o tile, n tile)
@compute @workgroup_size(16, 16, 1)
fn matmul_forward(@builtin(local_invocation_id) l: vec3<u32>,
                  @builtin(workgroup_id) wg: vec3<u32>) {
  let n = wg.y * TS + l.y;
  let o = wg.x * TS + l.x;
  let wo = wg.x * TS + l.y;  // the W row this thread loads
  var acc = 0.0;
  let tiles = (p.C + TS - 1u) / TS;
  for (var t = 0u; t < tiles; t++) {
    let c = t * TS + l.x;
    var xv = 0.0;
    if (n < p.N && c < p.C) { xv = x[n * p.C + c]; }
    ta[l.y][l.x] = xv;       // ta[n][c]
    var wv = 0.0;
    if (wo < p.OC && c < p.C) { wv = W[wo * p.C + c]; }
    tb[l.y][l.x] = wv;       // tb[o][c]
    workgroupBarrier();
    for (var k = 0u; k < TS; k++) { acc += ta[l.y][k] * tb[l.x][k]; }
    workgroupBarrier();
  }
  if (n < p.N && o < p.OC) {
    var v = acc;
    if (p.has_b != 0u) { v += b[o]; }
    out[n * p.OC + o] = v;
  }
}
