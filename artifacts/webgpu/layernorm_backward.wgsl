// LayerNorm backward (all three accumulate): dx per row (one invocation per row), dw and db per
// channel (one invocation per channel, summing over rows): no two invocations write one element.
struct Params { N: u32, C: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read_write> dw: array<f32>;
@group(0) @binding(3) var<storage, read_write> db: array<f32>;
@group(0) @binding(4) var<storage, read> dout: array<f32>;
@group(0) @binding(5) var<storage, read> x: array<f32>;
@group(0) @binding(6) var<storage, read> w: array<f32>;
@group(0) @binding(7) var<storage, read> mean: array<f32>;
@group(0) @binding(8) var<storage, read> rstd: array<f32>;

// dx = rstd (dnorm - mean(dnorm) - norm mean(dnorm norm)), dnorm = dout w
@compute @workgroup_size(64, 1, 1)
fn layernorm_backward_dx(@builtin(global_invocation_id) g: vec3<u32>) {
  let n = g.x;
  if (n >= p.N) { return; }
  let row = n * p.C;
  let m = mean[n];
  let r = rstd[n];
  var s1 = 0.0;
  var s2 = 0.0;
  for (var c = 0u; c < p.C; c++) {
    let norm = (x[row + c] - m) * r;
    let dn = dout[row + c] * w[c];
    s1 += dn;
    s2 += dn * norm;
  }
  let m1 = s1 / f32(p.C);
  let m2 = s2 / f32(p.C);
  for (var c = 0u; c < p.C; c++) {
    let norm = (x[row + c] - m) * r;
    let dn = dout[row + c] * w[c];
    dx[row + c] += r * (dn - m1 - norm * m2);
  }
}

@compute @workgroup_size(64, 1, 1)
fn layernorm_backward_dwdb(@builtin(global_invocation_id) g: vec3<u32>) {
  let c = g.x;
  if (c >= p.C) { return; }
  var sw = 0.0;
  var sb = 0.0;
  for (var n = 0u; n < p.N; n++) {
    let i = n * p.C + c;
    let norm = (x[i] - mean[n]) * rstd[n];
    sw += dout[i] * norm;
    sb += dout[i];
  }
  dw[c] += sw;
  db[c] += sb;
}
