// Train step (issue 16), gradient-norm clip, part 2: the global norm from the per-tensor sums
// (in tensor order) and the clip scale, reference.train.clip_grads: scale = clip / norm when
// clip > 0 and norm > clip, else exactly 1. scale[0] = the scale, scale[1] = the norm.
struct Params { slots: u32, clip: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> scale: array<f32>;
@group(0) @binding(2) var<storage, read> partial: array<f32>;

@compute @workgroup_size(1, 1, 1)
fn step_clip() {
  var s = 0.0;
  for (var i = 0u; i < p.slots; i++) { s += partial[i]; }
  let norm = sqrt(s);
  var k = 1.0;
  if (p.clip > 0.0 && norm > p.clip) { k = p.clip / norm; }
  scale[0] = k;
  scale[1] = norm;
}
