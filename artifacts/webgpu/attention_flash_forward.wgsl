// FlashAttention-2-style causal multi-head attention, forward (Dao 2023, Algorithm 1), over a
// fused qkv (B, T, 3C): head h of q at channels [h*hs, (h+1)*hs), scale 1/sqrt(hs).
// A workgroup owns TILE query rows of one (b, h), one invocation per row. It walks the KTILE-key
// tiles up to its last row (causal), each K and V tile loaded once into workgroup memory by
// the whole workgroup, and keeps per row an online softmax: the running max m, the running sum
// l of exp(s - m) and the unnormalised output acc, rescaled by exp(m_old - m_new) whenever a
// tile raises the max. No (T, T) matrix exists: out = acc / l, and lse = m + log(l) is kept
// per row for the backward (attention_flash_backward.wgsl recomputes P = exp(s - lse)).
// hs is limited to HS_MAX (the per-row registers and the tiles are sized by it); a larger
// head writes NaN, so it fails parity instead of passing wrongly.
const TILE: u32 = 16u;   // query rows per workgroup, one invocation each
const KTILE: u32 = 8u;   // keys per K/V tile
const HS_MAX: u32 = 256u; // the K and V tiles take 16 KiB, WebGPU's default maxComputeWorkgroupStorageSize
struct Params { B: u32, T: u32, C: u32, NH: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> o: array<f32>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
@group(0) @binding(3) var<storage, read> qkv: array<f32>;

var<workgroup> ks: array<f32, 2048>;  // KTILE * HS_MAX: the key tile
var<workgroup> vs: array<f32, 2048>;  // the value tile

// a quiet NaN for a head wider than HS_MAX (a runtime value: a NaN constant does not compile)
fn quiet_nan() -> f32 { return bitcast<f32>(0x7fc00000u | (p.B & 0u)); }
fn qi(b: u32, t: u32) -> u32 { return (b * p.T + t) * 3u * p.C; }

@compute @workgroup_size(16, 1, 1)
fn attention_flash_forward(@builtin(workgroup_id) wg: vec3<u32>,
                           @builtin(local_invocation_id) lid: vec3<u32>) {
  // workgroup x = query tile, y = b * NH + h: everything a loop bound or barrier depends on is
  // uniform over the workgroup; rows past T take part in the loads and barriers only
  let b = wg.y / p.NH;
  let h = wg.y % p.NH;
  let hs = p.C / p.NH;
  let hw = min(hs, HS_MAX);
  let q0 = wg.x * TILE;
  let t = q0 + lid.x;
  let live = t < p.T;
  let scale = 1.0 / sqrt(f32(hs));
  var q: array<f32, 256>;
  var acc: array<f32, 256>;
  if (live) {
    for (var i = 0u; i < hw; i++) { q[i] = qkv[qi(b, t) + h * hs + i]; acc[i] = 0.0; }
  }
  var m = 0.0;
  var l = 0.0;
  let kend = min(p.T, q0 + TILE);           // keys this workgroup's rows can see (causal)
  let ntiles = (kend + KTILE - 1u) / KTILE; // the last, partial tile included
  for (var j = 0u; j < ntiles; j++) {
    let k0 = j * KTILE;
    let kr = k0 + lid.x;
    if (lid.x < KTILE && kr < p.T) {
      for (var i = 0u; i < hw; i++) {
        ks[lid.x * HS_MAX + i] = qkv[qi(b, kr) + p.C + h * hs + i];
        vs[lid.x * HS_MAX + i] = qkv[qi(b, kr) + 2u * p.C + h * hs + i];
      }
    }
    workgroupBarrier();
    let last = min(k0 + KTILE, t + 1u);      // this row's keys in the tile: k0 .. last - 1
    if (live && k0 < last) {
      var s: array<f32, 8>;
      var mt = s[0];
      for (var jj = k0; jj < last; jj++) {
        var dot = 0.0;
        for (var i = 0u; i < hw; i++) { dot += q[i] * ks[(jj - k0) * HS_MAX + i]; }
        s[jj - k0] = dot * scale;
        if (jj == k0) { mt = s[0]; } else { mt = max(mt, s[jj - k0]); }
      }
      if (j > 0u) {
        mt = max(m, mt);
        let corr = exp(m - mt);             // rescale what was summed under the old max
        l = l * corr;
        for (var i = 0u; i < hw; i++) { acc[i] = acc[i] * corr; }
      }
      for (var jj = k0; jj < last; jj++) {
        let e = exp(s[jj - k0] - mt);
        l += e;
        for (var i = 0u; i < hw; i++) { acc[i] += e * vs[(jj - k0) * HS_MAX + i]; }
      }
      m = mt;
    }
    workgroupBarrier();
  }
  if (live) {
    let nan = quiet_nan();
    let out = (b * p.T + t) * p.C + h * hs;
    for (var i = 0u; i < hs; i++) {
      if (hs <= HS_MAX) { o[out + i] = acc[i] / l; } else { o[out + i] = nan; }
    }
    if (hs <= HS_MAX) { lse[wg.y * p.T + t] = m + log(l); } else { lse[wg.y * p.T + t] = nan; }
  }
}
