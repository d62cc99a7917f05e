// The ONE JS driver of the kernel library, loaded by Node (node_server.mjs) and by Chromium
// (chromium_worker.mjs). The artifact's format loader (format_<name>.mjs, named by the entry's
// `loader`, from harness/formats) brings the module up and hands over its exports and memory;
// this file wraps every export the entry's signatures list, the same way for every format.
//
// Argument kinds come from manifestEntry.signatures and the pointer width from
// manifestEntry.ptr_width, read ONCE at load: under Memory64 every `ptr` argument is passed as a
// BigInt and every `ptr` result comes back as a Number. Guessing per call (e.g. "is it a BigInt
// already?") is how the TinyGPT Number-vs-BigInt bug hid, so nothing here inspects values.

/** An error with the harness's failure class (see harness/hosts/base.py) as `kind`. */
export class HarnessError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
    this.name = kind;
  }
}

/** The harness failure class of any error thrown while loading or calling. */
export function errorKind(err) {
  if (err instanceof HarnessError) return err.kind;
  if (err instanceof WebAssembly.CompileError) return 'CorruptArtifact'; // refined in Python
  if (err instanceof WebAssembly.LinkError) return 'ABIError';
  if (err instanceof WebAssembly.RuntimeError) return 'Trap';
  if (err instanceof TypeError) return 'ABIError'; // e.g. "Cannot convert 16 to a BigInt"
  if (err instanceof RangeError) return 'Trap'; // wasm stack overflow
  return 'HostError';
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function argConverter(kind, width, numberShim) {
  if (kind === 'ptr' && width === 64 && !numberShim) return (x) => BigInt(x);
  return (x) => Number(x); // i32, f32 ("NaN"/"Infinity" strings too) and wasm32 pointers
}

function resultConverter(kind, width, name) {
  if (kind === 'void') return () => null;
  if (kind !== 'ptr') return (r) => r;
  if (width === 32) return (r) => r >>> 0; // an i32 pointer above 2 GiB comes back negative
  return (r) => {
    if (r > MAX_SAFE) throw new HarnessError('ABIError', `${name} returned ${r}, above 2^53`);
    return Number(r);
  };
}

/** Smallest nonzero delta between consecutive performance.now() reads, in ns. */
export function measureClockResolutionNs(maxReads = 1_000_000, budgetMs = 100) {
  let best = Infinity;
  const start = performance.now();
  let last = start;
  for (let i = 0; i < maxReads; i++) {
    const t = performance.now();
    const d = t - last;
    if (d > 0 && d < best) best = d;
    last = t;
    if (t - start > budgetMs) break;
  }
  return best * 1e6;
}

/**
 * One loaded artifact: wrapped exports, memory access and an in-engine timing loop.
 * `opened` is what a format loader returns: {lookup(name) -> function|undefined,
 * heap() -> Uint8Array over the whole current memory, checkArity: whether a function's
 * `length` is its wasm arity (false for glue wrappers taking `...args`), info?: facts about
 * the loaded module for the harness, e.g. {pthread_workers}}.
 */
export class ArtifactInstance {
  constructor(opened, entry, width, numberShim) {
    this.opened = opened;
    this.info = opened.info || {}; // what the loader reports about the loaded module
    this.ptrWidth = width;
    this.numberShim = numberShim;
    this.raw = {};
    this.convert = {};
    this.fns = {};
    const missing = [];
    for (const [name, sig] of Object.entries(entry.signatures)) {
      const fn = opened.lookup(name);
      if (typeof fn !== 'function') {
        missing.push(name);
        continue;
      }
      if (opened.checkArity && fn.length !== sig.params.length) {
        throw new HarnessError(
          'ABIError',
          `${name} takes ${fn.length} parameters in the module, the ABI says ${sig.params.length}`,
        );
      }
      this.raw[name] = fn;
      this.convert[name] = sig.params.map((k) => argConverter(k, width, numberShim));
      this.fns[name] = this.wrap(name, fn, sig, width);
    }
    if (missing.length) {
      throw new HarnessError('MissingExport', `missing export(s): ${missing.join(', ')}`);
    }
  }

  wrap(name, fn, sig, width) {
    const toResult = resultConverter(sig.result, width, name);
    return (...args) => {
      const r = fn(...this.convertArgs(name, args));
      // a WebGPU export is async (its results come back through mapAsync): Session.call awaits
      return r instanceof Promise ? r.then(toResult) : toResult(r);
    };
  }

  convertArgs(name, args) {
    const conv = this.convert[name];
    if (conv === undefined) {
      throw new HarnessError('MissingExport', `${name} is not in the artifact's signatures`);
    }
    if (args.length !== conv.length) {
      throw new HarnessError('ABIError', `${name} takes ${conv.length} arguments, got ${args.length}`);
    }
    return args.map((a, i) => {
      try {
        return conv[i](a);
      } catch (err) {
        throw new HarnessError('ABIError', `${name} argument ${i}: ${err.message}`);
      }
    });
  }

  call(name, args) {
    if (this.fns[name] === undefined) {
      throw new HarnessError('MissingExport', `${name} is not in the artifact's signatures`);
    }
    return this.fns[name](...args);
  }

  bytes() {
    return this.opened.heap(); // re-read each time: memory.grow detaches buffers
  }

  checkRange(what, ptr, n) {
    const size = this.bytes().byteLength;
    if (!Number.isSafeInteger(ptr) || !Number.isSafeInteger(n) || ptr < 0 || n < 0 || ptr + n > size) {
      throw new HarnessError('HostError', `${what} of ${n} bytes at ${ptr} is outside memory (${size} bytes)`);
    }
  }

  write(ptr, data) {
    this.checkRange('write', ptr, data.length);
    this.bytes().set(data, ptr);
  }

  read(ptr, n) {
    this.checkRange('read', ptr, n);
    return this.bytes().slice(ptr, ptr + n);
  }

  /** Time `samples` loops of `innerReps` calls inside the engine with performance.now(). */
  timeCalls(name, args, innerReps, samples, warmup) {
    const fn = this.raw[name];
    if (fn === undefined) throw new HarnessError('MissingExport', `${name} is not in the artifact's signatures`);
    for (const [what, v, min] of [['inner_reps', innerReps, 1], ['samples', samples, 1], ['warmup', warmup, 0]]) {
      if (!Number.isSafeInteger(v) || v < min) throw new HarnessError('HostError', `${what} must be an integer >= ${min}, got ${v}`);
    }
    const a = this.convertArgs(name, args); // converted once, outside the timed loop
    if (this.opened.timing) {
      // an async artifact (webgpu) times itself: this loop would time promise creation
      return this.opened.timing.time(name, a, innerReps, samples, warmup);
    }
    for (let i = 0; i < warmup; i++) fn(...a);
    const out = new Float64Array(samples);
    for (let s = 0; s < samples; s++) {
      const t0 = performance.now();
      for (let i = 0; i < innerReps; i++) fn(...a);
      out[s] = ((performance.now() - t0) * 1e6) / innerReps;
    }
    return out;
  }
}

const LOADER_NAME = /^format_[a-z0-9_]+\.mjs$/;

/**
 * Bring up the artifact `manifestEntry` describes with its format's loader and wrap the exports
 * `manifestEntry.signatures` lists. `io` reads the artifact's files by role: {bytes(role) ->
 * Promise<Uint8Array>, url(role) -> string, path(role) -> string|undefined (Node only)}.
 * options.numberShim: pass `ptr` arguments as Numbers even under Memory64 -- the deliberate
 * TinyGPT bug, kept so a test can show the harness reports V8's TypeError as an ABIError.
 * options.loadTimeoutMs: how long a loader may wait for a module to come up.
 */
export async function loadArtifact(manifestEntry, io, options = {}) {
  const width = Number(manifestEntry.ptr_width);
  if (width !== 32 && width !== 64) {
    throw new HarnessError('ABIError', `ptr_width must be 32 or 64, got ${manifestEntry.ptr_width}`);
  }
  if (!LOADER_NAME.test(String(manifestEntry.loader))) {
    throw new HarnessError('HostError', `no JS loader named ${JSON.stringify(manifestEntry.loader)}`);
  }
  const loader = await import(new URL(`./${manifestEntry.loader}`, import.meta.url).href);
  const opened = await loader.open(manifestEntry, io, options);
  return new ArtifactInstance(opened, manifestEntry, width, Boolean(options.numberShim));
}

/** Settle with `promise`, or reject with a HostTimeout naming `what` after `ms` milliseconds. */
export function withTimeout(promise, ms, what) {
  if (!(ms > 0)) return promise;
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new HarnessError('HostTimeout', `${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}
