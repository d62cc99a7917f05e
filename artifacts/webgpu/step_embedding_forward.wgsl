// Train step (issue 16): token + position embedding, out[b,t,:] = wte[idx[b,t],:] + wpe[t,:].
// One invocation per output element. Not a tinygpt.h op binding: tg_embedding_forward has no V
// or maxT argument, and the loader sizes every buffer from the op's own arguments.
struct Params { B: u32, T: u32, C: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<i32>;
@group(0) @binding(3) var<storage, read> wte: array<f32>;
@group(0) @binding(4) var<storage, read> wpe: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn step_embedding_forward(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x;
  if (i >= p.B * p.T * p.C) { return; }
  let n = i / p.C;
  let c = i % p.C;
  let t = n % p.T;
  out[i] = wte[u32(idx[n]) * p.C + c] + wpe[t * p.C + c];
}
