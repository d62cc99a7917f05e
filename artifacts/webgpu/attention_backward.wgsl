// Naive causal multi-head attention over a fused qkv (B, T, 3C), head h of q at channels
// [h*hs, (h+1)*hs), scale 1/sqrt(hs). Forward: one invocation per (b, t, h) row of scores
// (preatt, att (B,NH,T,T): att is 0 above the diagonal). Backward (dqkv accumulates): pass 1
// per (b, t, h) writes dpre[t, :] (the softmax backward, scaled); pass 2 per (b, t, h) gathers
// dq[t], dk[t], dv[t], so no two invocations write one element.
struct Params { B: u32, T: u32, C: u32, NH: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dqkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> pre: array<f32>;   // dpreatt
@group(0) @binding(3) var<storage, read_write> att: array<f32>;   // datt
@group(0) @binding(4) var<storage, read> qkv: array<f32>;
@group(0) @binding(5) var<storage, read> dout: array<f32>;
@group(0) @binding(6) var<storage, read> attin: array<f32>;       // the forward's att

// (b, t, h) of one invocation: x = t, y = b * NH + h
struct Row { b: u32, t: u32, h: u32, ok: bool }
fn row_of(g: vec3<u32>) -> Row {
  return Row(g.y / p.NH, g.x, g.y % p.NH, g.x < p.T && g.y < p.B * p.NH);
}
fn qi(b: u32, t: u32) -> u32 { return (b * p.T + t) * 3u * p.C; }
fn ai(b: u32, h: u32, t: u32) -> u32 { return ((b * p.NH + h) * p.T + t) * p.T; }

@compute @workgroup_size(64, 1, 1)
fn attention_backward_dpre(@builtin(global_invocation_id) g: vec3<u32>) {
  let r = row_of(g);
  if (!r.ok) { return; }
  let hs = p.C / p.NH;
  let scale = 1.0 / sqrt(f32(hs));
  let a = ai(r.b, r.h, r.t);
  let dy = (r.b * p.T + r.t) * p.C + r.h * hs;
  var s = 0.0;
  for (var t2 = 0u; t2 <= r.t; t2++) {
    let v = qi(r.b, t2) + 2u * p.C + r.h * hs;
    var d = 0.0;
    for (var i = 0u; i < hs; i++) { d += dout[dy + i] * qkv[v + i]; }
    att[a + t2] = d;                       // datt
    s += d * attin[a + t2];
  }
  for (var t2 = 0u; t2 <= r.t; t2++) {
    pre[a + t2] = attin[a + t2] * (att[a + t2] - s) * scale;
  }
}

@compute @workgroup_size(64, 1, 1)
fn attention_backward_dqkv(@builtin(global_invocation_id) g: vec3<u32>) {
  let r = row_of(g);
  if (!r.ok) { return; }
  let hs = p.C / p.NH;
  let base = qi(r.b, r.t) + r.h * hs;       // this row's q; + C its k; + 2C its v
  let a = ai(r.b, r.h, r.t);
  let dy = (r.b * p.T + r.t) * p.C + r.h * hs;
  for (var i = 0u; i < hs; i++) {
    var dq = 0.0;
    for (var t2 = 0u; t2 <= r.t; t2++) { dq += pre[a + t2] * qkv[qi(r.b, t2) + p.C + r.h * hs + i]; }
    var dk = 0.0;
    var dv = 0.0;
    for (var t3 = r.t; t3 < p.T; t3++) {
      let a3 = ai(r.b, r.h, t3) + r.t;
      dk += pre[a3] * qkv[qi(r.b, t3) + r.h * hs + i];
      dv += attin[a3] * dout[(r.b * p.T + t3) * p.C + r.h * hs + i];
    }
    dqkv[base + i] += dq;
    dqkv[base + p.C + i] += dk;
    dqkv[base + 2u * p.C + i] += dv;
  }
}
