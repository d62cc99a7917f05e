// Loader of the `webgpu` format (harness/formats/webgpu.py): WGSL compute shaders dispatched as
// the artifact's kernels.toml says (validated in Python, handed over as entry.webgpu).
//
// The harness's kernel client speaks linear memory (alloc, write, call with pointers, read), so
// this loader gives it one: an emulated 32-bit memory (a resizable ArrayBuffer, a bump
// allocator behind tg_alloc/tg_free). Each op export copies its buffers from that memory into
// GPU storage buffers, runs the op's passes in one compute pass, and copies every `storage`
// (read-write) buffer back. Exports are async (mapAsync); driver.mjs awaits them.
//
// Failures, each in the implementation's own words: no navigator.gpu or a null adapter is
// IncompatibleArtifact; a shader that does not compile is a HostError `file:line:col: message`;
// a dispatch or buffer over a device limit is a HostError naming the limit; a lost device is
// HostCrashed.

import { HarnessError } from './driver.mjs';
import { probeAdapters, stepExports } from './webgpu_step.mjs';

const HEAP_START = 16 << 20;
const HEAP_MAX = 1 << 30;
const ALIGN = 16;
const UNIFORM_BYTES = 256; // kernels.toml's params are refused past it at load (webgpu.py)
const LOSS_SETTLE_MS = 2000;

// ---- expressions: integers, names, + - * //, cdiv/max/min(a, b), parentheses ----------------

function tokenize(text) {
  const out = [];
  const re = /\s*(\d+|[A-Za-z_]\w*|\/\/|[-+*(),])\s*/y;
  while (re.lastIndex < text.length) {
    const m = re.exec(text);
    if (m === null) throw new HarnessError('HostError', `cannot read expression ${JSON.stringify(text)}`);
    out.push(m[1]);
  }
  return out;
}

const FUNCTIONS = {
  cdiv: (a, b) => Math.floor((a + b - 1) / b),
  max: (a, b) => Math.max(a, b),
  min: (a, b) => Math.min(a, b),
};

/** Evaluate `text` (checked by harness/formats/webgpu.py: check_expression) over `env`. */
export function evaluate(text, env) {
  const t = tokenize(text);
  let i = 0;
  const peek = () => t[i];
  const take = (want) => {
    const tok = t[i++];
    if (want !== undefined && tok !== want) {
      throw new HarnessError('HostError', `expression ${JSON.stringify(text)}: expected ${want}, got ${tok}`);
    }
    return tok;
  };
  const factor = () => {
    const tok = take();
    if (tok === '(') { const v = sum(); take(')'); return v; }
    if (/^\d+$/.test(tok)) return Number(tok);
    if (tok in FUNCTIONS && peek() === '(') {
      take('(');
      const a = sum();
      take(',');
      const b = sum();
      take(')');
      return FUNCTIONS[tok](a, b);
    }
    if (!(tok in env)) throw new HarnessError('HostError', `expression ${JSON.stringify(text)}: unknown name ${tok}`);
    return Number(env[tok]);
  };
  const product = () => {
    let v = factor();
    while (peek() === '*' || peek() === '//') v = take() === '*' ? v * factor() : Math.floor(v / factor());
    return v;
  };
  const sum = () => {
    let v = product();
    while (peek() === '+' || peek() === '-') v = take() === '+' ? v + product() : v - product();
    return v;
  };
  const v = sum();
  if (i !== t.length) throw new HarnessError('HostError', `expression ${JSON.stringify(text)}: trailing ${t[i]}`);
  return v;
}

// ---- the emulated memory ---------------------------------------------------------------------

class Memory {
  constructor() {
    this.buffer = new ArrayBuffer(HEAP_START, { maxByteLength: HEAP_MAX });
    this.top = ALIGN; // 0 is NULL
    this.live = 0;
  }

  alloc(n) {
    const size = Math.max(ALIGN, Math.ceil(Number(n) / ALIGN) * ALIGN);
    if (this.top + size > HEAP_MAX) return 0;
    const ptr = this.top;
    this.top += size;
    if (this.top > this.buffer.byteLength) {
      this.buffer.resize(Math.min(HEAP_MAX, Math.max(this.top, Math.ceil(this.buffer.byteLength * 1.5))));
    }
    this.live += 1;
    return ptr;
  }

  free(ptr) {
    if (Number(ptr) === 0) return;
    this.live = Math.max(0, this.live - 1);
    if (this.live === 0) this.top = ALIGN; // every buffer freed: start over
  }

  bytes() {
    return new Uint8Array(this.buffer);
  }
}

// ---- device, shaders, pipelines -------------------------------------------------------------

export async function compileShader(device, name, code) {
  const module = device.createShaderModule({ code, label: name });
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === 'error');
  if (errors.length) {
    const text = errors.map((m) => `${name}:${m.lineNum}:${m.linePos}: error: ${m.message}`).join('; ');
    throw new HarnessError('HostError', `WGSL compilation failed: ${text}`);
  }
  return module;
}

function checkWorkgroupSize(device, where, size) {
  const lim = device.limits;
  const dims = [['maxComputeWorkgroupSizeX', size[0]], ['maxComputeWorkgroupSizeY', size[1]], ['maxComputeWorkgroupSizeZ', size[2]]];
  for (const [name, v] of dims) {
    if (v > lim[name]) throw new HarnessError('HostError', `${where}: workgroup size ${size} exceeds the device limit ${name} (${lim[name]})`);
  }
  const n = size[0] * size[1] * size[2];
  if (n > lim.maxComputeInvocationsPerWorkgroup) {
    throw new HarnessError('HostError', `${where}: workgroup size ${size} (${n} invocations) exceeds the device limit maxComputeInvocationsPerWorkgroup (${lim.maxComputeInvocationsPerWorkgroup})`);
  }
}

export async function buildOp(device, op, modules) {
  const layout = device.createBindGroupLayout({
    label: op.export,
    entries: op.layout.map((e, i) => ({ binding: i, visibility: GPUShaderStage.COMPUTE, buffer: { type: e.type } })),
  });
  const pipelineLayout = device.createPipelineLayout({ bindGroupLayouts: [layout] });
  const pipelines = [];
  for (const pass of op.passes) {
    const where = `${op.export}: ${pass.shader} ${pass.entry}`;
    checkWorkgroupSize(device, where, pass.workgroup_size);
    try {
      pipelines.push(await device.createComputePipelineAsync({
        label: where,
        layout: pipelineLayout,
        compute: { module: modules[pass.shader], entryPoint: pass.entry },
      }));
    } catch (err) {
      throw new HarnessError('HostError', `${where}: pipeline creation failed: ${err.message}`);
    }
  }
  return { layout, pipelines };
}

// ---- one op call -----------------------------------------------------------------------------

export class GpuOp {
  constructor(ctx, op, built) {
    this.ctx = ctx;
    this.op = op;
    this.layout = built.layout;
    this.pipelines = built.pipelines;
    this.kinds = (ctx.signatures[op.export] || { params: [] }).params;
  }

  /** The env of dims and has_* flags, and each buffer's pointer, from the call's arguments. */
  bind(args) {
    const env = {};
    const ptrs = {};
    this.op.args.forEach((a, i) => {
      if (a in this.op.buffers) ptrs[a] = Number(args[i]);
      else env[a] = args[i];
    });
    for (const o of this.op.optional) env[`has_${o}`] = ptrs[o] !== 0 ? 1 : 0;
    for (const [b, p] of Object.entries(ptrs)) {
      if (p === 0 && !this.op.optional.includes(b)) {
        throw new HarnessError('ABIError', `${this.op.export}: buffer ${b} is NULL and not optional`);
      }
    }
    return { env, ptrs };
  }

  uniform(env) {
    const data = new DataView(new ArrayBuffer(UNIFORM_BYTES));
    this.op.params.forEach((name, i) => {
      const kind = name.startsWith('has_') ? 'u32' : this.kinds[this.op.args.indexOf(name)];
      if (kind === 'f32') data.setFloat32(4 * i, Number(env[name]), true);
      else data.setInt32(4 * i, Number(env[name]), true);
    });
    return data.buffer;
  }

  /** Upload the call's buffers and uniform; the bind group, and what to read back. Pushes two
   * error scopes (validation, out-of-memory) that the caller pops after its submit. */
  prepare(args) {
    const { device, memory, limits } = this.ctx;
    this.ctx.alive();
    const name = this.op.export;
    const { env, ptrs } = this.bind(args);
    const heap = memory.bytes();
    const made = [];
    const make = (desc) => { const b = device.createBuffer(desc); made.push(b); return b; };
    device.pushErrorScope('validation');
    device.pushErrorScope('out-of-memory');
    const entries = [];
    const readback = [];
    for (const [i, e] of this.op.layout.entries()) {
      if (e.type === 'uniform') {
        const u = make({ size: UNIFORM_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
        device.queue.writeBuffer(u, 0, this.uniform(env));
        entries.push({ binding: i, resource: { buffer: u } });
        continue;
      }
      const ptr = ptrs[e.name];
      const bytes = ptr === 0 ? 0 : 4 * evaluate(this.op.buffers[e.name], env);
      if (bytes > limits.maxStorageBufferBindingSize) {
        throw new HarnessError('HostError', `${name}: buffer ${e.name} is ${bytes} bytes, above the device limit maxStorageBufferBindingSize (${limits.maxStorageBufferBindingSize})`);
      }
      if (ptr + bytes > heap.byteLength) {
        throw new HarnessError('HostError', `${name}: buffer ${e.name} of ${bytes} bytes at ${ptr} is outside memory (${heap.byteLength} bytes)`);
      }
      const size = Math.max(16, Math.ceil(bytes / 4) * 4);
      const buf = make({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
      if (bytes > 0) device.queue.writeBuffer(buf, 0, heap.slice(ptr, ptr + bytes)); // a copy: writeBuffer refuses views of a resizable buffer
      entries.push({ binding: i, resource: { buffer: buf } });
      if (e.type === 'storage' && bytes > 0) readback.push({ buf, ptr, bytes });
    }
    const group = device.createBindGroup({ layout: this.layout, entries });
    return { env, ptrs, made, make, readback, group };
  }

  /** Record every pass of the op into `pass`, each dispatch checked against the device limit. */
  record(pass, prep) {
    const { limits } = this.ctx;
    this.op.passes.forEach((p, k) => {
      const counts = p.dispatch.map((d) => evaluate(d, prep.env));
      counts.forEach((c, axis) => {
        if (c > limits.maxComputeWorkgroupsPerDimension) {
          throw new HarnessError('HostError', `${this.op.export}: ${p.entry} dispatches ${c} workgroups along ${'xyz'[axis]} (${p.dispatch[axis]}), above the device limit maxComputeWorkgroupsPerDimension (${limits.maxComputeWorkgroupsPerDimension})`);
        }
      });
      if (counts.some((c) => c <= 0)) return;
      pass.setPipeline(this.pipelines[k]);
      pass.setBindGroup(0, prep.group);
      pass.dispatchWorkgroups(...counts);
    });
  }

  async checkScopes(prep) {
    const oom = await this.ctx.device.popErrorScope();
    const invalid = await this.ctx.device.popErrorScope();
    if (oom || invalid) {
      prep.made.forEach((b) => b.destroy());
      throw new HarnessError('HostError', `${this.op.export}: WebGPU ${oom ? 'out of memory' : 'validation error'}: ${(oom || invalid).message}`);
    }
  }

  async run(...args) {
    const { device, memory } = this.ctx;
    const name = this.op.export;
    const prep = this.prepare(args);
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    this.record(pass, prep);
    pass.end();
    const staging = prep.readback.map((r) => {
      const s = prep.make({ size: Math.max(16, r.bytes), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      encoder.copyBufferToBuffer(r.buf, 0, s, 0, r.bytes);
      return s;
    });
    device.queue.submit([encoder.finish()]);
    if (this.ctx.testFault === 'destroy-device-mid-op') device.destroy(); // kernels.toml [webgpu] test_fault
    await this.checkScopes(prep);
    try {
      await Promise.all(staging.map((s) => s.mapAsync(GPUMapMode.READ)));
    } catch (err) {
      prep.made.forEach((b) => b.destroy());
      await this.ctx.settleLoss();
      this.ctx.alive();
      throw new HarnessError('HostError', `${name}: reading results back failed: ${err.message}`);
    }
    const out = memory.bytes();
    prep.readback.forEach((r, k) => {
      out.set(new Uint8Array(staging[k].getMappedRange(0, r.bytes)), r.ptr);
      staging[k].unmap();
    });
    prep.made.forEach((b) => b.destroy());
    return this.result(prep.env, prep.ptrs, out);
  }

  /**
   * ns per call of the op's passes, `samples` times: the buffers are uploaded once and nothing is
   * read back, so a sample is the GPU's work alone. With `timestamp-query`, the GPU's own clock
   * around one compute pass of `innerReps` repetitions; without it, the wall clock from submit to
   * onSubmittedWorkDone (which includes the queue's latency).
   */
  async time(args, innerReps, samples, warmup) {
    const { device } = this.ctx;
    const prep = this.prepare(args);
    const stamps = this.ctx.timestamp;
    const query = stamps ? device.createQuerySet({ type: 'timestamp', count: 2 }) : null;
    const resolve = stamps ? prep.make({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC }) : null;
    const once = async (reps, timed) => {
      const encoder = device.createCommandEncoder();
      const desc = timed && stamps ? { timestampWrites: { querySet: query, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : {};
      const pass = encoder.beginComputePass(desc);
      for (let r = 0; r < reps; r++) this.record(pass, prep);
      pass.end();
      let read = null;
      if (timed && stamps) {
        read = prep.make({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
        encoder.resolveQuerySet(query, 0, 2, resolve, 0);
        encoder.copyBufferToBuffer(resolve, 0, read, 0, 16);
      }
      const t0 = performance.now();
      device.queue.submit([encoder.finish()]);
      await device.queue.onSubmittedWorkDone();
      const wallNs = (performance.now() - t0) * 1e6;
      if (read === null) return wallNs;
      await read.mapAsync(GPUMapMode.READ);
      const [begin, end] = new BigUint64Array(read.getMappedRange());
      read.unmap();
      read.destroy();
      return Number(end - begin);
    };
    try {
      for (let i = 0; i < warmup; i++) await once(innerReps, false);
      const out = new Float64Array(samples);
      for (let s = 0; s < samples; s++) out[s] = (await once(innerReps, true)) / innerReps;
      await this.checkScopes(prep);
      return out;
    } finally {
      prep.made.forEach((b) => b.destroy());
      if (query !== null) query.destroy();
    }
  }

  result(env, ptrs, heap) {
    if (this.op.result === 'void') return undefined;
    const of = this.op.result.slice('mean:'.length);
    const n = evaluate(this.op.buffers[of], env);
    const values = new Float32Array(heap.buffer, ptrs[of], n);
    let s = 0;
    for (let i = 0; i < n; i++) s = Math.fround(s + values[i]); // float32, in index order
    return Math.fround(s / n);
  }
}

// ---- Node: the npm `webgpu` package (Dawn's bindings) --------------------------------------

const NODE_WEBGPU = 'webgpu'; // installed beside the Node hosts by `tinygpt-harness install-hosts`
const DAWN_PROBE_MS = 30000;

/** Dawn's own words when it gives no adapter: Dawn writes them to the process's stderr (fd 2),
 * which a script cannot read back, so the same request runs once more in a child Node whose
 * stderr is captured. Its warning and error lines, without Dawn's source locations. */
async function dawnSays(indexJs) {
  const { spawnSync } = await import('node:child_process');
  const probe = `import { create, globals } from ${JSON.stringify(indexJs)};
Object.assign(globalThis, globals);
const a = await create([]).requestAdapter();
process.stdout.write(a === null ? 'null' : 'adapter');`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', probe], { encoding: 'utf8', timeout: DAWN_PROBE_MS });
  const lines = (r.stderr || '').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('at '));
  return lines.join(' ') || `no message on stderr (child exit ${r.status}, stdout ${JSON.stringify(r.stdout)})`;
}

/** navigator.gpu's stand-in in Node: the npm `webgpu` package next to this Node's own package
 * (<hosts>/node_modules/<alias>/bin/node -> <hosts>/node_modules/webgpu). Missing, or no
 * adapter: IncompatibleArtifact in the package's words. */
async function nodeGpu(entry) {
  const { basename, dirname, join } = await import('node:path');
  const { existsSync, readFileSync } = await import('node:fs');
  const modules = dirname(dirname(dirname(process.execPath)));
  // A Node that is not install-hosts' (the system's /usr/bin/node) has no such layout: the
  // path "beside" it would be meaningless (/usr/bin/../../webgpu), so say what it is instead.
  if (basename(modules) !== 'node_modules') {
    throw new HarnessError('IncompatibleArtifact', `${entry.name}: Node has no WebGPU: this Node (${process.execPath}) is not one tinygpt-harness install-hosts installed, beside which alone the npm package ${NODE_WEBGPU} is looked for (<hosts>/node_modules/${NODE_WEBGPU}); run webgpu artifacts on a pinned Node host (node22, node24)`);
  }
  const dir = join(modules, NODE_WEBGPU);
  const indexJs = join(dir, 'index.js');
  if (!existsSync(indexJs)) {
    throw new HarnessError('IncompatibleArtifact', `${entry.name}: Node has no WebGPU: the npm package ${NODE_WEBGPU} is not installed beside this Node (${indexJs} missing; tinygpt-harness install-hosts installs it)`);
  }
  const version = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version;
  let mod;
  try {
    mod = await import(indexJs);
  } catch (err) {
    throw new HarnessError('IncompatibleArtifact', `${entry.name}: npm ${NODE_WEBGPU} ${version} does not load: ${err.message}`);
  }
  Object.assign(globalThis, mod.globals); // GPUBufferUsage, GPUShaderStage, GPUMapMode, ...
  const gpu = mod.create([]);
  const adapter = await gpu.requestAdapter();
  if (adapter === null) {
    throw new HarnessError('IncompatibleArtifact', `${entry.name}: npm ${NODE_WEBGPU} ${version} (Dawn): requestAdapter() returned null; Dawn: ${await dawnSays(indexJs)}`);
  }
  return { gpu, adapter };
}

/** Open the artifact: adapter, device, every shader compiled, every pipeline built. */
export async function open(entry, io) {
  if (typeof window === 'undefined' && typeof process !== 'undefined' && process.versions?.node) {
    return openWith(entry, io, await nodeGpu(entry));
  }
  const gpu = typeof navigator !== 'undefined' ? navigator.gpu : undefined;
  if (gpu === undefined) {
    throw new HarnessError('IncompatibleArtifact', `${entry.name}: this host has no WebGPU (navigator.gpu is undefined in ${typeof window === 'undefined' ? 'its worker' : 'its page'})`);
  }
  const adapter = await gpu.requestAdapter();
  if (adapter === null) {
    throw new HarnessError('IncompatibleArtifact', `${entry.name}: navigator.gpu.requestAdapter() returned null: no WebGPU adapter (Chromium gives its SwiftShader adapter only with --enable-unsafe-webgpu: host chromium-webgpu)`);
  }
  return openWith(entry, io, { gpu, adapter });
}

/** The device, shaders and pipelines on `adapter` (navigator.gpu's, or Node's npm webgpu). */
async function openWith(entry, io, { gpu, adapter }) {
  const timestamp = adapter.features.has('timestamp-query');
  const device = await adapter.requestDevice({ requiredFeatures: timestamp ? ['timestamp-query'] : [] });
  const info = adapter.info || {};
  const ctx = {
    device,
    memory: new Memory(),
    limits: device.limits,
    signatures: entry.signatures,
    lost: null,
    timestamp, // the adapter has timestamp-query: GPU clock for timing, else the wall clock
    testFault: entry.webgpu.test_fault || '',
    alive() {
      if (this.lost !== null) throw new HarnessError('HostCrashed', `WebGPU device lost: ${this.lost}`);
    },
    // A failed read-back may reject before device.lost resolves: give the loss LOSS_SETTLE_MS
    // to arrive, so a lost device is reported as the loss (its reason), not as the read-back.
    async settleLoss() {
      if (this.lost !== null) return;
      await Promise.race([device.lost, new Promise((r) => setTimeout(r, LOSS_SETTLE_MS))]);
      await Promise.resolve(); // let the lost handler below record the reason first
    },
  };
  device.lost.then((l) => { ctx.lost = `${l.reason}: ${l.message}`; });
  const plan = entry.webgpu;
  const modules = {};
  for (const op of Object.values(plan.ops)) {
    for (const pass of op.passes) {
      if (!(pass.shader in modules)) {
        const code = new TextDecoder().decode(await io.bytes(`wgsl:${pass.shader}`));
        modules[pass.shader] = await compileShader(device, pass.shader, code);
      }
    }
  }
  const fns = {
    tg_alloc: (n) => ctx.memory.alloc(n),
    tg_free: (p) => ctx.memory.free(p),
  };
  const ops = {};
  for (const op of Object.values(plan.ops)) {
    ops[op.export] = new GpuOp(ctx, op, await buildOp(device, op, modules));
    fns[op.export] = (...args) => ops[op.export].run(...args);
  }
  // the composed train step, and what each adapter request gives (webgpu_step.mjs)
  Object.assign(fns, stepExports(ctx, ops, { gpu, io, plan }));
  const requests = await probeAdapters(gpu);
  const clock = timestamp ? 'webgpu timestamp-query (GPU clock, one compute pass)' : 'wall clock: submit to onSubmittedWorkDone';
  return {
    lookup: (name) => fns[name],
    // driver.mjs's timing loop would time promises: an async artifact times itself
    timing: {
      clock: info.isFallbackAdapter ? `${clock}; CPU-emulated (${info.architecture || 'fallback'} adapter)` : clock,
      resolutionNs: timestamp ? 1 : null,
      time: (name, args, innerReps, samples, warmup) => {
        if (!(name in ops)) throw new HarnessError('MissingExport', `${name} is not an op of the kernel manifest`);
        return ops[name].time(args, innerReps, samples, warmup);
      },
    },
    heap: () => ctx.memory.bytes(),
    checkArity: false, // (...args) wrappers: the manifest's arity was checked in Python
    info: {
      webgpu: {
        vendor: info.vendor || '',
        architecture: info.architecture || '',
        device: info.device || '',
        description: info.description || '',
        is_fallback_adapter: Boolean(info.isFallbackAdapter ?? adapter.isFallbackAdapter),
        timestamp_query: timestamp,
        limits: {
          maxComputeWorkgroupsPerDimension: device.limits.maxComputeWorkgroupsPerDimension,
          maxComputeInvocationsPerWorkgroup: device.limits.maxComputeInvocationsPerWorkgroup,
          maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
        },
        adapter_requests: requests,
      },
    },
  };
}
