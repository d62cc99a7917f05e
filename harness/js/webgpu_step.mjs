// The train step composed of the artifact's WGSL ops (issue 16; docs/webgpu.md "The train
// step"): embedding -> per layer (layernorm, qkv matmul, attention, projection, residual,
// layernorm, fc matmul, gelu, fcproj matmul, residual) -> final layernorm -> tied lm head ->
// cross-entropy, then backward through the same ops, the global grad-norm clip and AdamW on
// every tensor. Attention is the FlashAttention-2-style pair (tg_attention_flash_*: no (T, T)
// buffer, the backward recomputes the probabilities from the row log-sum-exp) or the naive one
// (tg_attention_*: the (T, T) scores and probabilities kept for the backward), as created.
// Every buffer stays on the GPU between ops: a step is ONE command buffer, and only what a
// call returns (logits, loss, gradients, parameters) is read back.
//
// Weights come in and go out in reference/presets.py's flat layout (tinygpt.h's: PARAM_NAMES
// order, per-layer tensors stacked along L), so the reference's init imports as is. On the GPU
// each tensor of each layer is its own buffer: a binding offset must be a multiple of
// minStorageBufferOffsetAlignment (256 bytes), which a layer's slice of ln1w (C floats) is not.
//
// Adapters: a step runs on the device of adapter request `adapter` (ADAPTER_REQUESTS: 0 the
// artifact's own device, 1 low-power, 2 high-performance, 3 forceFallbackAdapter), each other
// request opening its own adapter, device, shader modules and pipelines on first use, so the
// cross-adapter table runs the same step on every adapter the page can get.
//
// Exports (the binding's [exports]: harness/checks/webgpu_model.py drives them):
//   tgw_step_create(adapter, L, NH, C, maxT, V, F, B, T, biases, attention) -> handle, 0 when
//                                              the request gives no adapter; biases: 1 qkv
//                                              2 attproj 4 fc 8 fcproj; attention: 0 naive 1 flash
//   tgw_step_load(h, params)                    upload flat params, zero AdamW's moments
//   tgw_step_forward(h, idx, targets, logits)   -> mean loss; logits (B*T*V) read back unless 0
//   tgw_step_backward(h, grads)                 gradients of the last forward (before the clip)
//   tgw_step_train(h, idx, targets, lr, beta1, beta2, eps, weight_decay, grad_clip, t) -> loss
//   tgw_step_params(h, out, which)              read back the flat params (which 0), or AdamW's
//                                               first (1) or second (2) moments
//   tgw_step_time(h, idx, targets, reps, samples) -> median ns per train step (the GPU's clock
//                                           with timestamp-query, else submit..onSubmittedWorkDone);
//                                           each step's ns written at `samples` (reps float64s)
//   tgw_step_free(h)

import { HarnessError } from './driver.mjs';
import { GpuOp, buildOp, compileShader, evaluate } from './format_webgpu.mjs';

const UNIFORM_BYTES = 256;
// uniform fields written as f32 (every other field is an integer, as kernels.toml declares)
const FLOAT_FIELDS = new Set(['lr', 'beta1', 'beta2', 'eps', 'weight_decay', 'clip', 'dloss']);
// the tensors that take weight decay: reference/model.py DECAYED_PARAMS
const DECAYED = new Set(['wte', 'wpe', 'qkvw', 'attprojw', 'fcw', 'fcprojw']);
const BIAS_BITS = { qkvb: 1, attprojb: 2, fcb: 4, fcprojb: 8 };
// tgw_step_create's `attention`: harness/checks/webgpu_step.py ATTENTION_KERNELS
const ATTENTION_NAIVE = 0;
const ATTENTION_FLASH = 1;

/** reference/presets.py param_shapes: [name, per-layer?, elements per layer]. */
function paramLayout(d) {
  const { L, C, maxT, V, F } = d;
  const all = [
    ['wte', false, V * C], ['wpe', false, maxT * C],
    ['ln1w', true, C], ['ln1b', true, C], ['qkvw', true, 3 * C * C], ['qkvb', true, 3 * C],
    ['attprojw', true, C * C], ['attprojb', true, C], ['ln2w', true, C], ['ln2b', true, C],
    ['fcw', true, F * C], ['fcb', true, F], ['fcprojw', true, C * F], ['fcprojb', true, C],
    ['lnfw', false, C], ['lnfb', false, C],
  ];
  return all.filter(([name]) => !(name in BIAS_BITS) || (d.biases & BIAS_BITS[name]) !== 0);
}

class Step {
  constructor(ctx, ops, d) {
    this.ctx = ctx;
    this.ops = ops;
    this.d = d;
    this.made = [];
    const dev = ctx.device;
    const { B, T, C, V, F, NH, L } = d;
    const N = B * T;
    const mk = (n) => {
      const bytes = Math.max(16, 4 * n);
      if (bytes > ctx.limits.maxStorageBufferBindingSize) {
        throw new HarnessError('HostError', `train step: a buffer of ${bytes} bytes is above the device limit maxStorageBufferBindingSize (${ctx.limits.maxStorageBufferBindingSize})`);
      }
      const b = dev.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
      this.made.push(b);
      return b;
    };
    this.mk = mk;
    // ---- parameters, gradients, moments: one buffer per tensor per layer, in flat order ----
    this.pieces = [];
    let off = 0;
    for (const [name, perLayer, n] of paramLayout(d)) {
      for (let l = 0; l < (perLayer ? L : 1); l++) {
        this.pieces.push({ name, layer: l, off, n, p: mk(n), g: mk(n), m: mk(n), v: mk(n) });
        off += n;
      }
    }
    this.total = off;
    const P = (name, l = 0) => this.pieces.find((q) => q.name === name && q.layer === l);
    this.P = P;
    // ---- activations and their gradients ----
    const a = (n) => mk(n);
    this.idx = a(N);
    this.tgt = a(N);
    this.x0 = a(N * C);
    this.layers = [];
    for (let l = 0; l < L; l++) {
      this.layers.push({
        ln1: a(N * C), ln1m: a(N), ln1r: a(N), qkv: a(N * 3 * C), atty: a(N * C),
        attproj: a(N * C), xmid: a(N * C),
        ln2: a(N * C), ln2m: a(N), ln2r: a(N), fch: a(N * F), fchg: a(N * F),
        fcproj: a(N * C), xout: a(N * C),
        // gradients (zeroed at the start of every backward: the ops accumulate)
        dfchg: a(N * F), dfch: a(N * F), dln2: a(N * C), datty: a(N * C),
        dqkv: a(N * 3 * C), dln1: a(N * C),
        // attention's own state: the naive kernels keep the (T, T) scores and probabilities
        // and their gradients; the flash ones only the row log-sum-exp (no (T, T) buffer)
        ...(d.attention === ATTENTION_FLASH
          ? { lse: a(B * NH * T), dpre: null, datt: null }
          : { pre: a(B * NH * T * T), att: a(B * NH * T * T),
              dpre: a(B * NH * T * T), datt: a(B * NH * T * T) }),
      });
    }
    this.lnf = a(N * C); this.lnfm = a(N); this.lnfr = a(N);
    this.logits = a(N * V); this.probs = a(N * V); this.losses = a(N);
    this.dlogits = a(N * V); this.dlnf = a(N * C); this.dres = a(N * C);
    this.partial = a(this.pieces.length);
    this.scale = a(2);
    this.dummy = a(4);
    this.zeroed = [this.dlogits, this.dlnf, this.dres,
      ...this.layers.flatMap((y) => [y.dfchg, y.dfch, y.dln2, y.datty, y.dqkv, y.dpre, y.datt, y.dln1]
        .filter((b) => b !== null)),
      ...this.pieces.map((q) => q.g)];
    this.build();
  }

  /** One dispatch of op `exportName` over `bufs` (by the op's buffer names) and dims `env`:
   * its uniform written once, its bind group made once. Returns {run(pass), uniform(env)}. */
  dispatch(exportName, env, bufs) {
    const gop = this.ops[exportName];
    if (gop === undefined) {
      const hint = exportName.startsWith('tg_attention_flash_')
        ? ' (the step\'s attention is "flash"; attention = "naive" in [check.model] / [check.bench] composes tg_attention_forward/backward)'
        : '';
      throw new HarnessError('HostError', `train step: the kernel manifest has no op ${exportName}${hint}`);
    }
    const op = gop.op;
    const full = { ...env };
    for (const o of op.optional) full[`has_${o}`] = bufs[o] ? 1 : 0;
    const u = this.ctx.device.createBuffer({ size: UNIFORM_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    this.made.push(u);
    const pack = (e) => {
      const data = new DataView(new ArrayBuffer(UNIFORM_BYTES));
      op.params.forEach((name, i) => {
        if (FLOAT_FIELDS.has(name)) data.setFloat32(4 * i, Number(e[name]), true);
        else data.setInt32(4 * i, Number(e[name]), true);
      });
      return data.buffer;
    };
    this.ctx.device.queue.writeBuffer(u, 0, pack(full));
    const entries = op.layout.map((e, i) => ({
      binding: i,
      resource: { buffer: e.type === 'uniform' ? u : (bufs[e.name] || this.dummy) },
    }));
    for (const e of op.layout) {
      if (e.type !== 'uniform' && !bufs[e.name] && !op.optional.includes(e.name)) {
        throw new HarnessError('HostError', `train step: ${exportName} needs buffer ${e.name}`);
      }
    }
    const group = this.ctx.device.createBindGroup({ layout: gop.layout, entries });
    const counts = op.passes.map((p) => p.dispatch.map((x) => evaluate(x, full)));
    const lim = this.ctx.limits.maxComputeWorkgroupsPerDimension;
    counts.forEach((c, k) => c.forEach((n, axis) => {
      if (n > lim) {
        throw new HarnessError('HostError', `train step: ${op.passes[k].entry} dispatches ${n} workgroups along ${'xyz'[axis]} (${op.passes[k].dispatch[axis]}), above the device limit maxComputeWorkgroupsPerDimension (${lim})`);
      }
    }));
    return {
      run: (pass) => {
        counts.forEach((c, k) => {
          if (c.some((n) => n <= 0)) return;
          pass.setPipeline(gop.pipelines[k]);
          pass.setBindGroup(0, group);
          pass.dispatchWorkgroups(...c);
        });
      },
      rewrite: (e) => this.ctx.device.queue.writeBuffer(u, 0, pack({ ...full, ...e })),
    };
  }

  /** Every dispatch of forward, backward and the update, recorded once as closures. */
  build() {
    const { B, T, C, V, F, NH, L, maxT } = this.d;
    const N = B * T;
    const P = this.P;
    const D = (name, env, bufs) => this.dispatch(name, env, bufs);
    const fwd = [];
    fwd.push(D('tgw_embedding_forward', { B, T, C, V, maxT }, { out: this.x0, idx: this.idx, wte: P('wte').p, wpe: P('wpe').p }));
    let x = this.x0;
    for (let l = 0; l < L; l++) {
      const y = this.layers[l];
      const b = (name) => (P(name, l) ? P(name, l).p : null);
      y.xin = x;
      fwd.push(D('tg_layernorm_forward', { N, C }, { out: y.ln1, mean: y.ln1m, rstd: y.ln1r, x, w: P('ln1w', l).p, b: P('ln1b', l).p }));
      fwd.push(D('tg_matmul_forward', { N, C, OC: 3 * C }, { out: y.qkv, x: y.ln1, W: P('qkvw', l).p, b: b('qkvb') }));
      if (this.d.attention === ATTENTION_FLASH) {
        fwd.push(D('tg_attention_flash_forward', { B, T, C, NH }, { out: y.atty, lse: y.lse, qkv: y.qkv }));
      } else {
        fwd.push(D('tg_attention_forward', { B, T, C, NH }, { out: y.atty, pre: y.pre, att: y.att, qkv: y.qkv }));
      }
      fwd.push(D('tg_matmul_forward', { N, C, OC: C }, { out: y.attproj, x: y.atty, W: P('attprojw', l).p, b: b('attprojb') }));
      fwd.push(D('tgw_residual_forward', { N: N * C }, { out: y.xmid, a: x, b: y.attproj }));
      fwd.push(D('tg_layernorm_forward', { N, C }, { out: y.ln2, mean: y.ln2m, rstd: y.ln2r, x: y.xmid, w: P('ln2w', l).p, b: P('ln2b', l).p }));
      fwd.push(D('tg_matmul_forward', { N, C, OC: F }, { out: y.fch, x: y.ln2, W: P('fcw', l).p, b: b('fcb') }));
      fwd.push(D('tg_gelu_forward', { N: N * F }, { out: y.fchg, x: y.fch }));
      fwd.push(D('tg_matmul_forward', { N, C: F, OC: C }, { out: y.fcproj, x: y.fchg, W: P('fcprojw', l).p, b: b('fcprojb') }));
      fwd.push(D('tgw_residual_forward', { N: N * C }, { out: y.xout, a: y.xmid, b: y.fcproj }));
      x = y.xout;
    }
    this.xfinal = x;
    fwd.push(D('tg_layernorm_forward', { N, C }, { out: this.lnf, mean: this.lnfm, rstd: this.lnfr, x, w: P('lnfw').p, b: P('lnfb').p }));
    // the tied lm head: logits = lnf @ wte^T, wte (V, C) as matmul's W (OC = V, C)
    fwd.push(D('tg_matmul_forward', { N, C, OC: V }, { out: this.logits, x: this.lnf, W: P('wte').p, b: null }));
    fwd.push(D('tg_crossentropy_forward', { N, V }, { losses: this.losses, probs: this.probs, logits: this.logits, targets: this.tgt }));
    this.fwd = fwd;

    const bwd = [];
    bwd.push(D('tg_crossentropy_backward', { N, V, dloss: 1 / N }, { dlogits: this.dlogits, probs: this.probs, targets: this.tgt }));
    bwd.push(D('tg_matmul_backward', { N, C, OC: V }, { dx: this.dlnf, dW: P('wte').g, db: null, dout: this.dlogits, x: this.lnf, W: P('wte').p }));
    bwd.push(D('tg_layernorm_backward', { N, C }, { dx: this.dres, dw: P('lnfw').g, db: P('lnfb').g, dout: this.dlnf, x: this.xfinal, w: P('lnfw').p, mean: this.lnfm, rstd: this.lnfr }));
    for (let l = L - 1; l >= 0; l--) {
      const y = this.layers[l];
      const gb = (name) => (P(name, l) ? P(name, l).g : null);
      // one residual-gradient buffer for both branches: each backward op ACCUMULATES into it
      bwd.push(D('tg_matmul_backward', { N, C: F, OC: C }, { dx: y.dfchg, dW: P('fcprojw', l).g, db: gb('fcprojb'), dout: this.dres, x: y.fchg, W: P('fcprojw', l).p }));
      bwd.push(D('tg_gelu_backward', { N: N * F }, { dx: y.dfch, x: y.fch, dout: y.dfchg }));
      bwd.push(D('tg_matmul_backward', { N, C, OC: F }, { dx: y.dln2, dW: P('fcw', l).g, db: gb('fcb'), dout: y.dfch, x: y.ln2, W: P('fcw', l).p }));
      bwd.push(D('tg_layernorm_backward', { N, C }, { dx: this.dres, dw: P('ln2w', l).g, db: P('ln2b', l).g, dout: y.dln2, x: y.xmid, w: P('ln2w', l).p, mean: y.ln2m, rstd: y.ln2r }));
      bwd.push(D('tg_matmul_backward', { N, C, OC: C }, { dx: y.datty, dW: P('attprojw', l).g, db: gb('attprojb'), dout: this.dres, x: y.atty, W: P('attprojw', l).p }));
      if (this.d.attention === ATTENTION_FLASH) {
        bwd.push(D('tg_attention_flash_backward', { B, T, C, NH }, { dqkv: y.dqkv, dout: y.datty, qkv: y.qkv, out: y.atty, lse: y.lse }));
      } else {
        bwd.push(D('tg_attention_backward', { B, T, C, NH }, { dqkv: y.dqkv, dpre: y.dpre, datt: y.datt, dout: y.datty, qkv: y.qkv, att: y.att }));
      }
      bwd.push(D('tg_matmul_backward', { N, C, OC: 3 * C }, { dx: y.dln1, dW: P('qkvw', l).g, db: gb('qkvb'), dout: y.dqkv, x: y.ln1, W: P('qkvw', l).p }));
      bwd.push(D('tg_layernorm_backward', { N, C }, { dx: this.dres, dw: P('ln1w', l).g, db: P('ln1b', l).g, dout: y.dln1, x: y.xin, w: P('ln1w', l).p, mean: y.ln1m, rstd: y.ln1r }));
    }
    bwd.push(D('tgw_embedding_backward', { B, T, C, V, maxT }, { dwte: P('wte').g, dwpe: P('wpe').g, dout: this.dres, idx: this.idx }));
    this.bwd = bwd;

    const upd = [];
    const slots = this.pieces.length;
    this.pieces.forEach((q, k) => upd.push(D('tgw_sumsq', { n: q.n, slot: k, slots }, { partial: this.partial, g: q.g })));
    this.clip = D('tgw_clip', { slots, clip: 0 }, { scale: this.scale, partial: this.partial });
    upd.push(this.clip);
    this.pieces.forEach((q) => upd.push(D('tgw_scale', { n: q.n }, { g: q.g, scale: this.scale })));
    this.adamw = this.pieces.map((q) => D('tg_adamw_update', { n: q.n, lr: 0, beta1: 0, beta2: 0, eps: 0, weight_decay: 0, t: 1 }, { p: q.p, g: q.g, m: q.m, v: q.v }));
    upd.push(...this.adamw);
    this.upd = upd;
  }

  /** Copy token ids (int32, B*T each) from memory to the GPU. */
  tokens(idxPtr, tgtPtr) {
    const heap = this.ctx.memory.bytes();
    const n = 4 * this.d.B * this.d.T;
    for (const [buf, ptr] of [[this.idx, idxPtr], [this.tgt, tgtPtr]]) {
      if (ptr === 0) continue;
      if (ptr + n > heap.byteLength) throw new HarnessError('HostError', `train step: tokens at ${ptr} are outside memory`);
      const ids = new Int32Array(heap.slice(ptr, ptr + n).buffer);
      const bad = ids.findIndex((v) => v < 0 || v >= this.d.V);
      if (bad >= 0) throw new HarnessError('HostError', `train step: token id ${ids[bad]} at position ${bad} is outside [0, ${this.d.V})`);
      this.ctx.device.queue.writeBuffer(buf, 0, ids);
    }
  }

  /** Record `lists` of dispatches into one compute pass (after zeroing the gradient buffers
   * when `zero`); optional timestamp writes around the pass. */
  encode(lists, zero, timestampWrites) {
    const enc = this.ctx.device.createCommandEncoder();
    if (zero) for (const b of this.zeroed) enc.clearBuffer(b);
    const pass = enc.beginComputePass(timestampWrites ? { timestampWrites } : {});
    for (const list of lists) for (const dsp of list) dsp.run(pass);
    pass.end();
    return enc;
  }

  /** Submit `enc` after copying each [src, srcOffsetBytes, bytes] into one mappable buffer;
   * return its bytes. The device's validation/OOM errors become the call's HostError. */
  async submitRead(enc, copies, what) {
    const dev = this.ctx.device;
    const total = copies.reduce((s, c) => s + c[2], 0);
    const staging = dev.createBuffer({ size: Math.max(16, total), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    let at = 0;
    for (const [src, off, bytes] of copies) { enc.copyBufferToBuffer(src, off, staging, at, bytes); at += bytes; }
    dev.pushErrorScope('validation');
    dev.pushErrorScope('out-of-memory');
    dev.queue.submit([enc.finish()]);
    const oom = await dev.popErrorScope();
    const invalid = await dev.popErrorScope();
    try {
      if (oom || invalid) throw new HarnessError('HostError', `train step ${what}: WebGPU ${oom ? 'out of memory' : 'validation error'}: ${(oom || invalid).message}`);
      if (total === 0) { await dev.queue.onSubmittedWorkDone(); this.ctx.alive(); return new Uint8Array(0); }
      try {
        await staging.mapAsync(GPUMapMode.READ);
      } catch (err) {
        this.ctx.alive();
        throw new HarnessError('HostError', `train step ${what}: reading results back failed: ${err.message}`);
      }
      const out = new Uint8Array(staging.getMappedRange(0, total).slice(0));
      staging.unmap();
      return out;
    } finally {
      staging.destroy();
    }
  }

  meanLoss(bytes) {
    const v = new Float32Array(bytes.buffer, bytes.byteOffset, this.d.B * this.d.T);
    let s = 0;
    for (let i = 0; i < v.length; i++) s = Math.fround(s + v[i]); // float32, in index order
    return Math.fround(s / v.length);
  }

  flatCopies(kind) {
    return this.pieces.map((q) => [q[kind], 0, 4 * q.n]);
  }

  writeHeap(ptr, bytes) {
    const heap = this.ctx.memory.bytes();
    if (ptr + bytes.byteLength > heap.byteLength) throw new HarnessError('HostError', `train step: ${bytes.byteLength} bytes at ${ptr} are outside memory`);
    heap.set(bytes, ptr);
  }

  load(ptr) {
    const heap = this.ctx.memory.bytes();
    if (ptr + 4 * this.total > heap.byteLength) throw new HarnessError('HostError', `train step: params at ${ptr} are outside memory`);
    const enc = this.ctx.device.createCommandEncoder();
    for (const q of this.pieces) {
      this.ctx.device.queue.writeBuffer(q.p, 0, heap.slice(ptr + 4 * q.off, ptr + 4 * (q.off + q.n)));
      enc.clearBuffer(q.m);
      enc.clearBuffer(q.v);
    }
    return this.submitRead(enc, [], 'load');
  }

  async forward(idxPtr, tgtPtr, logitsPtr) {
    this.tokens(idxPtr, tgtPtr);
    const enc = this.encode([this.fwd], false, null);
    const nl = 4 * this.d.B * this.d.T * this.d.V;
    const copies = [[this.losses, 0, 4 * this.d.B * this.d.T]];
    if (logitsPtr !== 0) copies.push([this.logits, 0, nl]);
    const out = await this.submitRead(enc, copies, 'forward');
    const nloss = 4 * this.d.B * this.d.T;
    if (logitsPtr !== 0) this.writeHeap(logitsPtr, out.subarray(nloss, nloss + nl));
    return this.meanLoss(out.subarray(0, nloss));
  }

  async backward(gradsPtr) {
    const enc = this.encode([this.bwd], true, null);
    const out = await this.submitRead(enc, this.flatCopies('g'), 'backward');
    this.writeHeap(gradsPtr, out);
  }

  setHyper(lr, beta1, beta2, eps, wd, clip, t) {
    this.clip.rewrite({ clip });
    this.pieces.forEach((q, k) => this.adamw[k].rewrite({
      lr, beta1, beta2, eps, weight_decay: DECAYED.has(q.name) ? wd : 0, t,
    }));
  }

  async train(idxPtr, tgtPtr, lr, beta1, beta2, eps, wd, clip, t) {
    this.tokens(idxPtr, tgtPtr);
    this.setHyper(lr, beta1, beta2, eps, wd, clip, t);
    const enc = this.encode([this.fwd, this.bwd, this.upd], true, null);
    const out = await this.submitRead(enc, [[this.losses, 0, 4 * this.d.B * this.d.T]], 'train');
    return this.meanLoss(out);
  }

  async params(ptr, which) {
    const kind = ['p', 'm', 'v'][which];
    if (kind === undefined) throw new HarnessError('HostError', `tgw_step_params: which is ${which}; 0 (params), 1 (m) or 2 (v)`);
    const enc = this.ctx.device.createCommandEncoder();
    this.writeHeap(ptr, await this.submitRead(enc, this.flatCopies(kind), 'params'));
  }

  /** Median ns of one train step over `reps` steps (after one warmup step), each its own
   * submission: with timestamp-query the GPU's clock around the step's compute pass (the
   * gradient zeroing before it is a clearBuffer outside the pass), else the wall clock from
   * submit to onSubmittedWorkDone. The weights move (AdamW at a rate of 0). Every step's ns,
   * in the order taken, go to `samplesPtr` as float64s (unless 0): the harness's statistics
   * (median, bootstrap CI, noise flag) are computed in Python from them, as for any figure. */
  async time(idxPtr, tgtPtr, reps, samplesPtr) {
    const dev = this.ctx.device;
    this.tokens(idxPtr, tgtPtr);
    this.setHyper(0, 0.9, 0.95, 1e-8, 0, 1, 1);
    const stamps = this.ctx.timestamp;
    const query = stamps ? dev.createQuerySet({ type: 'timestamp', count: 2 }) : null;
    const resolve = stamps ? dev.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC }) : null;
    const samples = [];
    try {
      for (let r = 0; r <= reps; r++) {
        const tw = stamps ? { querySet: query, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } : null;
        const enc = this.encode([this.fwd, this.bwd, this.upd], true, tw);
        if (stamps) enc.resolveQuerySet(query, 0, 2, resolve, 0);
        const t0 = performance.now();
        const out = await this.submitRead(enc, stamps ? [[resolve, 0, 16]] : [], 'time');
        const wall = (performance.now() - t0) * 1e6;
        if (r === 0) continue; // warmup
        if (stamps) {
          const [begin, end] = new BigUint64Array(out.buffer, out.byteOffset, 2);
          samples.push(Number(end - begin));
        } else {
          samples.push(wall);
        }
      }
    } finally {
      if (query) query.destroy();
      if (resolve) resolve.destroy();
    }
    if (samplesPtr !== 0) this.writeHeap(samplesPtr, new Uint8Array(Float64Array.from(samples).buffer));
    const sorted = [...samples].sort((x, y) => x - y);
    return sorted[Math.floor(sorted.length / 2)];
  }

  free() {
    this.made.forEach((b) => b.destroy());
    this.made = [];
  }
}

/** The adapter requests a step can run on, by index (the artifact's own device is index 0). */
export const ADAPTER_REQUESTS = [
  ['default', {}],
  ['low-power', { powerPreference: 'low-power' }],
  ['high-performance', { powerPreference: 'high-performance' }],
  ['fallback', { forceFallbackAdapter: true }],
];

function adapterSummary(adapter) {
  const info = adapter.info || {};
  return {
    vendor: info.vendor || '',
    architecture: info.architecture || '',
    device: info.device || '',
    description: info.description || '',
    is_fallback_adapter: Boolean(info.isFallbackAdapter ?? adapter.isFallbackAdapter),
    timestamp_query: adapter.features.has('timestamp-query'),
  };
}

/** What each of ADAPTER_REQUESTS gives in this page: {request, options, adapter|null}. */
export async function probeAdapters(gpu) {
  const out = [];
  for (const [request, options] of ADAPTER_REQUESTS) {
    let adapter = null;
    try {
      adapter = await gpu.requestAdapter(options);
    } catch (err) {
      out.push({ request, options, adapter: null, error: String(err.message || err) });
      continue;
    }
    out.push({ request, options, adapter: adapter === null ? null : adapterSummary(adapter) });
  }
  return out;
}

/** A device, shader modules and ops of the artifact on adapter request `k` (k > 0), sharing
 * the artifact's emulated memory; null when the request gives no adapter. */
async function openOn(base, env, k) {
  const adapter = await env.gpu.requestAdapter(ADAPTER_REQUESTS[k][1]);
  if (adapter === null) return null;
  const timestamp = adapter.features.has('timestamp-query');
  const device = await adapter.requestDevice({ requiredFeatures: timestamp ? ['timestamp-query'] : [] });
  const ctx = {
    device, memory: base.memory, limits: device.limits, signatures: base.signatures, lost: null, timestamp,
    alive() {
      if (this.lost !== null) throw new HarnessError('HostCrashed', `WebGPU device lost: ${this.lost}`);
    },
  };
  device.lost.then((l) => { ctx.lost = `${l.reason}: ${l.message}`; });
  const modules = {};
  const ops = {};
  for (const op of Object.values(env.plan.ops)) {
    for (const pass of op.passes) {
      if (!(pass.shader in modules)) {
        const code = new TextDecoder().decode(await env.io.bytes(`wgsl:${pass.shader}`));
        modules[pass.shader] = await compileShader(device, pass.shader, code);
      }
    }
    ops[op.export] = new GpuOp(ctx, op, await buildOp(device, op, modules));
  }
  return { ctx, ops };
}

/** The step's exports over the opened artifact's device (`ctx`) and built ops (`ops`); `env`
 * ({gpu, io, plan}) opens the other adapter requests' devices on first use. */
export function stepExports(ctx, ops, env) {
  const steps = new Map();
  const devices = new Map([[0, { ctx, ops }]]);
  let next = 1;
  const get = (h) => {
    const s = steps.get(Number(h));
    if (s === undefined) throw new HarnessError('HostError', `train step: no step handle ${h}`);
    s.ctx.alive();
    return s;
  };
  return {
    tgw_step_create: async (adapter, L, NH, C, maxT, V, F, B, T, biases, attention) => {
      ctx.alive();
      if (!Number.isInteger(adapter) || adapter < 0 || adapter >= ADAPTER_REQUESTS.length) {
        throw new HarnessError('HostError', `train step: adapter request ${adapter} is not one of 0..${ADAPTER_REQUESTS.length - 1}`);
      }
      if (!devices.has(adapter)) devices.set(adapter, await openOn(ctx, env, adapter));
      const on = devices.get(adapter);
      if (on === null) return 0;
      const d = { L, NH, C, maxT, V, F, B, T, biases, attention };
      for (const [k, v] of Object.entries(d)) {
        if (!Number.isInteger(v) || v < (k === 'biases' || k === 'attention' ? 0 : 1)) throw new HarnessError('HostError', `train step: ${k} = ${v}`);
      }
      if (attention !== ATTENTION_NAIVE && attention !== ATTENTION_FLASH) {
        throw new HarnessError('HostError', `train step: attention = ${attention}, not ${ATTENTION_NAIVE} (naive) or ${ATTENTION_FLASH} (flash)`);
      }
      if (C % NH !== 0 || T > maxT) throw new HarnessError('HostError', `train step: C=${C} NH=${NH} T=${T} maxT=${maxT}`);
      const h = next++;
      steps.set(h, new Step(on.ctx, on.ops, d));
      return h;
    },
    tgw_step_load: (h, ptr) => get(h).load(Number(ptr)).then(() => undefined),
    tgw_step_forward: (h, idx, tgt, logits) => get(h).forward(Number(idx), Number(tgt), Number(logits)),
    tgw_step_backward: (h, grads) => get(h).backward(Number(grads)),
    tgw_step_train: (h, idx, tgt, lr, b1, b2, eps, wd, clip, t) => get(h).train(Number(idx), Number(tgt), lr, b1, b2, eps, wd, clip, t),
    tgw_step_params: (h, ptr, which) => get(h).params(Number(ptr), Number(which)),
    tgw_step_time: (h, idx, tgt, reps, samples) => get(h).time(Number(idx), Number(tgt), reps, Number(samples)),
    tgw_step_free: (h) => { const s = steps.get(Number(h)); if (s) { s.free(); steps.delete(Number(h)); } },
  };
}
