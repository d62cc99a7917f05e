// Softmax cross-entropy forward: one invocation per row, the row max subtracted (logits of
// +-100 must not overflow); losses[n] = log(sum) - (logit[target] - max) (finite when the
// target's probability underflows).
struct Params { N: u32, V: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> losses: array<f32>;
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;
@group(0) @binding(3) var<storage, read> logits: array<f32>;
@group(0) @binding(4) var<storage, read> targets: array<i32>;

@compute @workgroup_size(64, 1, 1)
fn crossentropy_forward(@builtin(global_invocation_id) g: vec3<u32>) {
  let n = g.x;
  if (n >= p.N) { return; }
  let row = n * p.V;
  var m = logits[row];
  for (var v = 1u; v < p.V; v++) { m = max(m, logits[row + v]); }
  var s = 0.0;
  for (var v = 0u; v < p.V; v++) { s += exp(logits[row + v] - m); }
  for (var v = 0u; v < p.V; v++) { probs[row + v] = exp(logits[row + v] - m) / s; }
  losses[n] = log(s) - (logits[row + u32(targets[n])] - m);
}
