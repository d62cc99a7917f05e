// matmul backward (tinygpt.h): dx (N,C) += dout @ W; dW (OC,C) += dout^T @ x; db (OC) +=
// sum_n dout. dx and dW are 16x16 tiles through workgroup memory, bounds-checked.
struct Params { N: u32, C: u32, OC: u32, has_db: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read_write> dW: array<f32>;
@group(0) @binding(3) var<storage, read_write> db: array<f32>;
@group(0) @binding(4) var<storage, read> dout: array<f32>;
@group(0) @binding(5) var<storage, read> x: array<f32>;
@group(0) @binding(6) var<storage, read> W: array<f32>;

const TS: u32 = 16u;
var<workgroup> ta: array<array<f32, 16>, 16>;
var<workgroup> tb: array<array<f32, 16>, 16>;

// dx[n, c] += sum_o dout[n, o] W[o, c]; workgroup (c tile, n tile)
@compute @workgroup_size(16, 16, 1)
fn matmul_backward_dx(@builtin(local_invocation_id) l: vec3<u32>,
                      @builtin(workgroup_id) wg: vec3<u32>) {
  let n = wg.y * TS + l.y;
  let c = wg.x * TS + l.x;
  var acc = 0.0;
  let tiles = (p.OC + TS - 1u) / TS;
  for (var t = 0u; t < tiles; t++) {
    let oa = t * TS + l.x;
    var dv = 0.0;
    if (n < p.N && oa < p.OC) { dv = dout[n * p.OC + oa]; }
    ta[l.y][l.x] = dv;       // ta[n][o]
    let ob = t * TS + l.y;
    var wv = 0.0;
    if (ob < p.OC && c < p.C) { wv = W[ob * p.C + c]; }
    tb[l.y][l.x] = wv;       // tb[o][c]
    workgroupBarrier();
    for (var k = 0u; k < TS; k++) { acc += ta[l.y][k] * tb[k][l.x]; }
    workgroupBarrier();
  }
  if (n < p.N && c < p.C) { dx[n * p.C + c] += acc; }
}

// dW[o, c] += sum_n dout[n, o] x[n, c]; workgroup (c tile, o tile)
@compute @workgroup_size(16, 16, 1)
fn matmul_backward_dw(@builtin(local_invocation_id) l: vec3<u32>,
                      @builtin(workgroup_id) wg: vec3<u32>) {
  let o = wg.y * TS + l.y;
  let c = wg.x * TS + l.x;
  var acc = 0.0;
  let tiles = (p.N + TS - 1u) / TS;
  for (var t = 0u; t < tiles; t++) {
    let na = t * TS + l.x;
    let oa = wg.y * TS + l.y;
    var dv = 0.0;
    if (na < p.N && oa < p.OC) { dv = dout[na * p.OC + oa]; }
    ta[l.y][l.x] = dv;       // ta[o][n]
    let nb = t * TS + l.y;
    var xv = 0.0;
    if (nb < p.N && c < p.C) { xv = x[nb * p.C + c]; }
    tb[l.y][l.x] = xv;       // tb[n][c]
    workgroupBarrier();
    for (var k = 0u; k < TS; k++) { acc += ta[l.y][k] * tb[k][l.x]; }
    workgroupBarrier();
  }
  if (o < p.OC && c < p.C) { dW[o * p.C + c] += acc; }
}

// db[o] += sum_n dout[n, o]
@compute @workgroup_size(64, 1, 1)
fn matmul_backward_db(@builtin(global_invocation_id) g: vec3<u32>) {
  let o = g.x;
  if (o >= p.OC || p.has_db == 0u) { return; }
  var acc = 0.0;
  for (var n = 0u; n < p.N; n++) { acc += dout[n * p.OC + o]; }
  db[o] += acc;
}
