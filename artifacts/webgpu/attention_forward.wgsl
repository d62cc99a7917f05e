// Naive causal multi-head attention over a fused qkv (B, T, 3C), head h of q at channels
// [h*hs, (h+1)*hs), scale 1/sqrt(hs). Forward: one invocation per (b, t, h) row of scores
// (preatt, att (B,NH,T,T): att is 0 above the diagonal). Backward (dqkv accumulates): pass 1
// per (b, t, h) writes dpre[t, :] (the softmax backward, scaled); pass 2 per (b, t, h) gathers
// dq[t], dk[t], dv[t], so no two invocations write one element.
struct Params { B: u32, T: u32, C: u32, NH: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> o: array<f32>;
@group(0) @binding(2) var<storage, read_write> pre: array<f32>;
@group(0) @binding(3) var<storage, read_write> att: array<f32>;
@group(0) @binding(4) var<storage, read> qkv: array<f32>;

// (b, t, h) of one invocation: x = t, y = b * NH + h
struct Row { b: u32, t: u32, h: u32, ok: bool }
fn row_of(g: vec3<u32>) -> Row {
  return Row(g.y / p.NH, g.x, g.y % p.NH, g.x < p.T && g.y < p.B * p.NH);
}
fn qi(b: u32, t: u32) -> u32 { return (b * p.T + t) * 3u * p.C; }
fn ai(b: u32, h: u32, t: u32) -> u32 { return ((b * p.NH + h) * p.T + t) * p.T; }

@compute @workgroup_size(64, 1, 1)
fn attention_forward(@builtin(global_invocation_id) g: vec3<u32>) {
  let r = row_of(g);
  if (!r.ok) { return; }
  let hs = p.C / p.NH;
  let scale = 1.0 / sqrt(f32(hs));
  let q = qi(r.b, r.t) + r.h * hs;
  let a = ai(r.b, r.h, r.t);
  var m = -3.0e38;
  for (var t2 = 0u; t2 <= r.t; t2++) {
    let k = qi(r.b, t2) + p.C + r.h * hs;
    var dot = 0.0;
    for (var i = 0u; i < hs; i++) { dot += qkv[q + i] * qkv[k + i]; }
    let s = dot * scale;
    pre[a + t2] = s;
    m = max(m, s);
  }
  var sum = 0.0;
  for (var t2 = 0u; t2 <= r.t; t2++) { let e = exp(pre[a + t2] - m); att[a + t2] = e; sum += e; }
  for (var t2 = 0u; t2 < p.T; t2++) {
    if (t2 <= r.t) { att[a + t2] = att[a + t2] / sum; } else { att[a + t2] = 0.0; }
  }
  let out = (r.b * p.T + r.t) * p.C + r.h * hs;
  for (var i = 0u; i < hs; i++) {
    var acc = 0.0;
    for (var t2 = 0u; t2 <= r.t; t2++) { acc += att[a + t2] * qkv[qi(r.b, t2) + 2u * p.C + r.h * hs + i]; }
    o[out + i] = acc;
  }
}
