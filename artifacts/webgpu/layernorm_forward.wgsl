// LayerNorm forward: one invocation per row; two passes (mean, then the biased variance of
// x - mean), eps = 1e-5 (TG_LAYERNORM_EPS). 1/sqrt, not inverseSqrt: WGSL gives inverseSqrt
// 2 ULP, sqrt and / are each within the policy's per-operation allowance (docs/tolerance.md).
struct Params { N: u32, C: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(4) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read> w: array<f32>;
@group(0) @binding(6) var<storage, read> b: array<f32>;

const EPS: f32 = 1e-5;

@compute @workgroup_size(64, 1, 1)
fn layernorm_forward(@builtin(global_invocation_id) g: vec3<u32>) {
  let n = g.x;
  if (n >= p.N) { return; }
  let row = n * p.C;
  var s = 0.0;
  for (var c = 0u; c < p.C; c++) { s += x[row + c]; }
  let m = s / f32(p.C);
  var v = 0.0;
  for (var c = 0u; c < p.C; c++) { let d = x[row + c] - m; v += d * d; }
  let r = 1.0 / sqrt(v / f32(p.C) + EPS);
  for (var c = 0u; c < p.C; c++) { out[row + c] = (x[row + c] - m) * r * w[c] + b[c]; }
  mean[n] = m;
  rstd[n] = r;
}
