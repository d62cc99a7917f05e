// The worker operations of docs/protocol.md over driver.mjs, shared by node_server.mjs (frames on
// stdin/stdout) and chromium_worker.mjs (messages from page.mjs). Each op takes a JSON-safe
// header and optional bytes and returns {header, blob}; errors are thrown and turned into error
// replies by the caller with errorReply().

import { loadArtifact, errorKind, HarnessError, measureClockResolutionNs } from './driver.mjs';
import { probe } from './probe.mjs';

/** Non-finite floats as strings, because JSON has no NaN (mirrors framing.encode_scalar). */
export function encodeScalar(v) {
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v); // "NaN", "Infinity", "-Infinity"
  return v;
}

/** The error reply header for `err`: the harness class plus the engine's own words. */
export function errorReply(err) {
  const message = err && err.message !== undefined ? String(err.message) : String(err);
  const engineError = err && err.constructor ? err.constructor.name : typeof err;
  return { error: errorKind(err), engine_error: engineError, message };
}

/** File access by role for an entry whose files are served at `entry.urls` (Chromium). */
export function urlIO(entry) {
  const url = (role) => {
    const u = (entry.urls || {})[role];
    if (u === undefined) throw new HarnessError('HostError', `${entry.name}: no ${role} file is served`);
    return u;
  };
  return {
    url,
    path: () => undefined,
    async bytes(role) {
      const response = await fetch(url(role));
      if (!response.ok) throw new HarnessError('HostError', `GET ${url(role)}: HTTP ${response.status}`);
      return new Uint8Array(await response.arrayBuffer());
    },
  };
}

export class Session {
  constructor() {
    this.instances = new Map();
    this.nextId = 1;
    this.clockResolutionNs = null;
  }

  clockResolution() {
    if (this.clockResolutionNs === null) this.clockResolutionNs = measureClockResolutionNs();
    return this.clockResolutionNs;
  }

  get(header) {
    const inst = this.instances.get(header.instance);
    if (inst === undefined) throw new HarnessError('HostError', `no loaded instance ${header.instance}`);
    return inst;
  }

  /** Load header.artifact (a LOAD header's entry) reading its files through `io`. */
  async load(header, io) {
    const t0 = performance.now();
    const inst = await loadArtifact(header.artifact, io, header.options || {});
    // read, compile, instantiate (and a glue's factory with its pthread pool), inside the host
    const loadNs = (performance.now() - t0) * 1e6;
    const id = this.nextId++;
    this.instances.set(id, inst);
    const exports = Object.keys(inst.fns).length;
    const info = { ...inst.info, load_ns: loadNs };
    return { header: { instance: id, ptr_width: inst.ptrWidth, exports, info } };
  }

  async call(header) {
    const result = await this.get(header).call(header.name, header.args || []);
    return { header: { result: encodeScalar(result) } };
  }

  write(header, bytes) {
    this.get(header).write(header.ptr, bytes);
    return { header: {} };
  }

  read(header) {
    return { header: {}, blob: this.get(header).read(header.ptr, header.n) };
  }

  async time(header) {
    const inst = this.get(header);
    const samples = await inst.timeCalls(
      header.name, header.args || [], header.inner_reps, header.samples, header.warmup,
    );
    const own = inst.opened.timing; // an artifact that times itself says with which clock
    const reply = {
      inner_reps: header.inner_reps,
      clock_resolution_ns: (own && own.resolutionNs) || this.clockResolution(),
      clock: own ? own.clock : 'performance.now',
    };
    return { header: reply, blob: new Uint8Array(samples.buffer) }; // float64, little-endian hosts
  }

  /**
   * Time two instances of this session side by side, pair after pair with no request between
   * them: header.first and header.second name an instance, an export and its args each;
   * header.order holds one entry per pair (0: first then second, 1: second then first); each
   * sample is one loop of header.inner_reps calls, the pair's first sample on each side after
   * header.warmup untimed calls. A pair does not start once header.stop_after_ms (if given)
   * have passed. Reply: header.pairs (how many ran), blob: float64 ns per call, first's samples
   * then second's. Timed apart, each sample waits for its own request, and the worker idles
   * between them; in Chromium that made one matmul sample 500-1365 us where back-to-back
   * samples read 480-530 (s35, docs/gate.md).
   */
  async pairs(header) {
    const sides = [header.first, header.second];
    const insts = sides.map((side) => this.get(side));
    const order = Array.from(header.order || [], Number);
    if (!order.length || order.some((k) => k !== 0 && k !== 1)) {
      throw new HarnessError('HostError', `pairs: order must be a non-empty list of 0 and 1, got ${JSON.stringify(header.order)}`);
    }
    const own = insts.map((inst) => inst.opened.timing); // an artifact that times itself
    const clocks = own.map((t) => (t ? t.clock : 'performance.now'));
    if (clocks[0] !== clocks[1]) {
      throw new HarnessError('HostError', `pairs: the two instances time on different clocks (${clocks.join(', ')})`);
    }
    const out = [new Float64Array(order.length), new Float64Array(order.length)];
    const started = performance.now();
    const limit = header.stop_after_ms;
    let done = 0;
    for (; done < order.length; done++) {
      if (done && limit != null && performance.now() - started > limit) break;
      const warm = done === 0 ? header.warmup : 0;
      for (const k of order[done] ? [1, 0] : [0, 1]) {
        const side = sides[k];
        const samples = await insts[k].timeCalls(side.name, side.args || [], header.inner_reps, 1, warm);
        out[k][done] = samples[0];
      }
    }
    const blob = new Float64Array(2 * done);
    blob.set(out[0].subarray(0, done), 0);
    blob.set(out[1].subarray(0, done), done);
    const reply = {
      pairs: done,
      inner_reps: header.inner_reps,
      clock_resolution_ns: (own[0] && own[0].resolutionNs) || this.clockResolution(),
      clock: clocks[0],
    };
    return { header: reply, blob: new Uint8Array(blob.buffer) };
  }

  /** header.samples means of header.reps round trips of probe header.kind (probe.mjs), in ns,
   * after header.warmup untimed ones; the reply names the clock and its resolution. */
  async probe(header) {
    const samples = await probe(header.kind, header.samples, header.reps, header.warmup || 0);
    const reply = { clock_resolution_ns: this.clockResolution(), clock: 'performance.now' };
    return { header: reply, blob: new Uint8Array(samples.buffer) };
  }

  unload(header) {
    this.instances.delete(header.instance);
    return { header: {} };
  }
}
