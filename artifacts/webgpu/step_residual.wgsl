// Train step (issue 16): residual forward, out = a + b over N floats. (Its backward needs no
// kernel: every backward op accumulates, so the step hands both branches one gradient buffer.)
struct Params { N: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn step_residual_forward(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x;
  if (i >= p.N) { return; }
  out[i] = a[i] + b[i];
}
