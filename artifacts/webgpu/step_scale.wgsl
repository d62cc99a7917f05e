// Train step (issue 16), gradient-norm clip, part 3: g *= scale[0], in place, before AdamW.
struct Params { n: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> g: array<f32>;
@group(0) @binding(2) var<storage, read> scale: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn step_scale(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= p.n) { return; }
  g[i] = g[i] * scale[0];
}
