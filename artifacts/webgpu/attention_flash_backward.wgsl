// FlashAttention-2-style causal multi-head attention, backward (Dao 2023, Algorithm 2), over a
// fused qkv (B, T, 3C); dqkv accumulates. Nothing (T, T) is stored: each pass recomputes
// P = exp(s - lse) from the forward's per-row lse, and D = rowsum(dout * out) per query row.
// WGSL has no float atomics, so FA2's one kernel is two passes that write disjoint elements:
//   dkdv: a workgroup per key tile (one invocation per key row) walks the query tiles at and
//         after it (causal), Q, dO, lse and D of each loaded once into workgroup memory:
//         dv_j += P_ij dO_i, dk_j += dS_ij q_i with dS_ij = P_ij (dO_i . v_j - D_i) * scale;
//   dq:   a workgroup per query tile (one invocation per query row) walks the key tiles up to
//         it, K and V loaded into workgroup memory: dq_i += dS_ij k_j.
// hs is limited to HS_MAX as in the forward; a larger head writes NaN.
const TILE: u32 = 16u;   // rows per workgroup (keys in dkdv, queries in dq), one invocation each
const KTILE: u32 = 8u;   // keys per K/V tile (dq)
const HS_MAX: u32 = 256u;
const QTILE: u32 = 4u;   // query rows per step of dkdv
struct Params { B: u32, T: u32, C: u32, NH: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dqkv: array<f32>;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read> outv: array<f32>;
@group(0) @binding(5) var<storage, read> lse: array<f32>;

// workgroup memory per entry point, each within WebGPU's default 16 KiB
var<workgroup> qa: array<f32, 1024>;  // QTILE * HS_MAX: Q of the query step (dkdv)
var<workgroup> qb: array<f32, 1024>;  // dO of the query step (dkdv)
var<workgroup> tl: array<f32, 4>;     // lse of the query step (dkdv)
var<workgroup> td: array<f32, 4>;     // D of the query step (dkdv)
var<workgroup> ka: array<f32, 2048>;  // KTILE * HS_MAX: K of the key tile (dq)
var<workgroup> kb: array<f32, 2048>;  // V of the key tile (dq)

// a quiet NaN for a head wider than HS_MAX (a runtime value: a NaN constant does not compile)
fn quiet_nan() -> f32 { return bitcast<f32>(0x7fc00000u | (p.B & 0u)); }
fn qi(b: u32, t: u32) -> u32 { return (b * p.T + t) * 3u * p.C; }
fn yi(b: u32, t: u32) -> u32 { return (b * p.T + t) * p.C; }

// D_i = dout_i . out_i over the head's channels (= sum_j P_ij dP_ij)
fn rowdot(b: u32, h: u32, t: u32, hs: u32) -> f32 {
  var d = 0.0;
  for (var i = 0u; i < hs; i++) { d += dout[yi(b, t) + h * hs + i] * outv[yi(b, t) + h * hs + i]; }
  return d;
}

@compute @workgroup_size(16, 1, 1)
fn attention_flash_backward_dkdv(@builtin(workgroup_id) wg: vec3<u32>,
                                 @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wg.y / p.NH;
  let h = wg.y % p.NH;
  let hs = p.C / p.NH;
  let hw = min(hs, HS_MAX);
  let scale = 1.0 / sqrt(f32(hs));
  let k0 = wg.x * TILE;
  let j = k0 + lid.x;                       // this invocation's key row
  let live = j < p.T;
  var kr: array<f32, 256>;
  var vr: array<f32, 256>;
  var dk: array<f32, 256>;
  var dv: array<f32, 256>;
  if (live) {
    for (var i = 0u; i < hw; i++) {
      kr[i] = qkv[qi(b, j) + p.C + h * hs + i];
      vr[i] = qkv[qi(b, j) + 2u * p.C + h * hs + i];
      dk[i] = 0.0;
      dv[i] = 0.0;
    }
  }
  let nsteps = (p.T + QTILE - 1u) / QTILE;
  for (var qt = k0 / QTILE; qt < nsteps; qt++) {  // query steps from the key tile's first row
    let i0 = qt * QTILE;
    let ir = i0 + lid.x;
    if (lid.x < QTILE && ir < p.T) {
      for (var c = 0u; c < hw; c++) {
        qa[lid.x * HS_MAX + c] = qkv[qi(b, ir) + h * hs + c];
        qb[lid.x * HS_MAX + c] = dout[yi(b, ir) + h * hs + c];
      }
      tl[lid.x] = lse[wg.y * p.T + ir];
      td[lid.x] = rowdot(b, h, ir, hw);
    }
    workgroupBarrier();
    if (live) {
      let iend = min(i0 + QTILE, p.T);
      for (var i = max(i0, j); i < iend; i++) {  // queries that see key j: i >= j
        let r = (i - i0) * HS_MAX;
        var s = 0.0;
        var dp = 0.0;
        for (var c = 0u; c < hw; c++) { s += qa[r + c] * kr[c]; dp += qb[r + c] * vr[c]; }
        let pij = exp(s * scale - tl[i - i0]);
        let ds = pij * (dp - td[i - i0]) * scale;
        for (var c = 0u; c < hw; c++) { dv[c] += pij * qb[r + c]; dk[c] += ds * qa[r + c]; }
      }
    }
    workgroupBarrier();
  }
  if (live) {
    let nan = quiet_nan();
    for (var c = 0u; c < hs; c++) {
      if (hs <= HS_MAX) {
        dqkv[qi(b, j) + p.C + h * hs + c] += dk[c];
        dqkv[qi(b, j) + 2u * p.C + h * hs + c] += dv[c];
      } else {
        dqkv[qi(b, j) + p.C + h * hs + c] = nan;
        dqkv[qi(b, j) + 2u * p.C + h * hs + c] = nan;
      }
    }
  }
}

@compute @workgroup_size(16, 1, 1)
fn attention_flash_backward_dq(@builtin(workgroup_id) wg: vec3<u32>,
                               @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wg.y / p.NH;
  let h = wg.y % p.NH;
  let hs = p.C / p.NH;
  let hw = min(hs, HS_MAX);
  let scale = 1.0 / sqrt(f32(hs));
  let q0 = wg.x * TILE;
  let t = q0 + lid.x;                       // this invocation's query row
  let live = t < p.T;
  var qr: array<f32, 256>;
  var dor: array<f32, 256>;
  var dq: array<f32, 256>;
  var L = 0.0;
  var D = 0.0;
  if (live) {
    for (var i = 0u; i < hw; i++) {
      qr[i] = qkv[qi(b, t) + h * hs + i];
      dor[i] = dout[yi(b, t) + h * hs + i];
      dq[i] = 0.0;
    }
    L = lse[wg.y * p.T + t];
    D = rowdot(b, h, t, hw);
  }
  let kend = min(p.T, q0 + TILE);
  let ntiles = (kend + KTILE - 1u) / KTILE;
  for (var kt = 0u; kt < ntiles; kt++) {
    let k0 = kt * KTILE;
    let kr = k0 + lid.x;
    if (lid.x < KTILE && kr < p.T) {
      for (var c = 0u; c < hw; c++) {
        ka[lid.x * HS_MAX + c] = qkv[qi(b, kr) + p.C + h * hs + c];
        kb[lid.x * HS_MAX + c] = qkv[qi(b, kr) + 2u * p.C + h * hs + c];
      }
    }
    workgroupBarrier();
    if (live) {
      let last = min(k0 + KTILE, t + 1u);
      for (var j = k0; j < last; j++) {
        let r = (j - k0) * HS_MAX;
        var s = 0.0;
        var dp = 0.0;
        for (var c = 0u; c < hw; c++) { s += qr[c] * ka[r + c]; dp += dor[c] * kb[r + c]; }
        let ds = exp(s * scale - L) * (dp - D) * scale;
        for (var c = 0u; c < hw; c++) { dq[c] += ds * ka[r + c]; }
      }
    }
    workgroupBarrier();
  }
  if (live) {
    let nan = quiet_nan();
    for (var c = 0u; c < hs; c++) {
      if (hs <= HS_MAX) { dqkv[qi(b, t) + h * hs + c] += dq[c]; } else { dqkv[qi(b, t) + h * hs + c] = nan; }
    }
  }
}
