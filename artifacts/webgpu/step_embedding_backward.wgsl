// Train step (issue 16): embedding backward, ACCUMULATING as tinygpt.h's backward ops do:
// dwte[idx[n],:] += dout[n,:] and dwpe[t,:] += sum_b dout[b,t,:]. Race-free without atomics:
// for dwte, the invocation of (n, c) where n is the FIRST position holding its token id sums
// every position with that id, in index order, and writes once; the others return. For dwpe one
// invocation per (t, c) sums over b. O((B T)^2 C) for dwte: fine at the step's sizes.
struct Params { B: u32, T: u32, C: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dwte: array<f32>;
@group(0) @binding(2) var<storage, read_write> dwpe: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read> idx: array<i32>;

@compute @workgroup_size(64, 1, 1)
fn step_embedding_backward_dwte(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x;
  let N = p.B * p.T;
  if (i >= N * p.C) { return; }
  let n = i / p.C;
  let c = i % p.C;
  let id = idx[n];
  for (var k = 0u; k < n; k++) { if (idx[k] == id) { return; } }  // not the first: skip
  var acc = 0.0;
  for (var k = n; k < N; k++) { if (idx[k] == id) { acc += dout[k * p.C + c]; } }
  dwte[u32(id) * p.C + c] += acc;
}

@compute @workgroup_size(64, 1, 1)
fn step_embedding_backward_dwpe(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x;
  if (i >= p.T * p.C) { return; }
  let t = i / p.C;
  let c = i % p.C;
  var acc = 0.0;
  for (var b = 0u; b < p.B; b++) { acc += dout[(b * p.T + t) * p.C + c]; }
  dwpe[i] += acc;
}
