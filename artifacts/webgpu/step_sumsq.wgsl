// Train step (issue 16), gradient-norm clip, part 1: partial[slot] = sum of g[i]^2 over one
// gradient tensor. One workgroup: 64 strided partial sums, then a fixed-shape tree in workgroup
// memory, so the sum's order (and bits) never depend on scheduling.
struct Params { n: u32, slot: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> partial: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;

var<workgroup> acc: array<f32, 64>;

@compute @workgroup_size(64, 1, 1)
fn step_sumsq(@builtin(local_invocation_id) l: vec3<u32>) {
  var s = 0.0;
  for (var i = l.x; i < p.n; i += 64u) { let v = g[i]; s += v * v; }
  acc[l.x] = s;
  workgroupBarrier();
  for (var half = 32u; half > 0u; half = half / 2u) {
    if (l.x < half) { acc[l.x] += acc[l.x + half]; }
    workgroupBarrier();
  }
  if (l.x == 0u) { partial[p.slot] = acc[0]; }
}
