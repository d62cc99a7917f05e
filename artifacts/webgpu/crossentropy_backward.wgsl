// Softmax cross-entropy backward: one invocation per element, dlogits += (probs - onehot) dloss.
struct Params { N: u32, V: u32, dloss: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(2) var<storage, read> probs: array<f32>;
@group(0) @binding(3) var<storage, read> targets: array<i32>;

@compute @workgroup_size(64, 1, 1)
fn crossentropy_backward(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x;
  if (i >= p.N * p.V) { return; }
  let n = i / p.V;
  let v = i % p.V;
  var d = probs[i];
  if (u32(targets[n]) == v) { d -= 1.0; }
  dlogits[i] += d * p.dloss;
}
