// AdamW, one invocation per parameter (tinygpt.h's update, bias-corrected at step t). The bias
// corrections 1 - beta^t are products of t float32 multiplies, not pow(): WGSL's pow is
// exp2(y log2 x), whose error 1 - beta2^t (about 0.01 at t = 10) would multiply 100-fold.
struct Params { n: u32, lr: f32, beta1: f32, beta2: f32, eps: f32, wd: f32, t: i32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> params: array<f32>;
@group(0) @binding(2) var<storage, read> grads: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn adamw_update(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x;
  if (i >= p.n) { return; }
  var b1t = 1.0;
  var b2t = 1.0;
  for (var s = 0; s < p.t; s++) { b1t *= p.beta1; b2t *= p.beta2; }
  let gi = grads[i];
  let mi = p.beta1 * m[i] + (1.0 - p.beta1) * gi;
  let vi = p.beta2 * v[i] + (1.0 - p.beta2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  let mh = mi / (1.0 - b1t);
  let vh = vi / (1.0 - b2t);
  params[i] = params[i] - p.lr * (mh / (sqrt(vh) + p.eps) + p.wd * params[i]);
}
