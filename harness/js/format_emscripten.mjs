// Loader of the `emscripten` format (harness/formats/emscripten.py): import the artifact's OWN
// glue (-sMODULARIZE -sEXPORT_ES6), call its factory with the .wasm's bytes and a locateFile
// that finds every file of the set, and hand the Module's `_`-prefixed exports and HEAPU8 to the
// driver. Nothing of the glue is replaced: its argument conversions are what the checks call.

import { HarnessError, withTimeout } from './driver.mjs';

const IS_NODE = typeof process === 'object' && typeof process.versions?.node === 'string';

function basename(p) {
  return String(p).split(/[\\/]/).pop();
}

// Emscripten 3.1.x's ES6 glue reads `require` and `__dirname` as free variables when it runs in
// Node (it was written for CommonJS); an ES module has neither, so they are provided before the
// glue is imported. One artifact per Node process (one worker per artifact), so no clash.
async function nodeGlobals(gluePath) {
  const { createRequire } = await import('node:module');
  const path = await import('node:path');
  globalThis.require = createRequire(gluePath);
  globalThis.__dirname = path.dirname(gluePath);
}

// The glue turns an instantiation failure into abort(): "Aborted(CompileError: <engine's
// words>). Build with -s ASSERTIONS=1 for more info." The engine's class and words are the cause.
const ABORTED = /^Aborted\((\w*Error): ([\s\S]*?)\)(\. Build with[\s\S]*)?$/;

function engineError(err, name) {
  const m = ABORTED.exec(String(err?.message ?? ''));
  if (m === null) {
    // the harness's own words, and the engine's (a trap in a static constructor is a Trap)
    if (err instanceof HarnessError || err instanceof WebAssembly.RuntimeError) return err;
    if (err instanceof WebAssembly.CompileError || err instanceof WebAssembly.LinkError) return err;
    // The glue's own start-up code threw (not the engine, not a call of the binding's): e.g.
    // emcc 3.1.6's Memory64 C++ runtime, "Cannot mix BigInt and other types". A TypeError here
    // says nothing about the binding's kinds, so it is not an ABIError: the build's glue broke.
    const cls = err?.constructor?.name ?? 'Error';
    return new HarnessError('HostError', `the emscripten glue of ${name} threw while starting the module, before any export was called: ${cls}: ${err?.message ?? err}`);
  }
  const kind = { CompileError: 'CorruptArtifact', LinkError: 'ABIError', TypeError: 'ABIError' }[m[1]] ?? 'HostError';
  return new HarnessError(kind, `${m[1]}: ${m[2]}`);
}

/** Import the glue, run its factory, and expose the Module to the driver. */
export async function open(entry, io, options = {}) {
  const paths = entry.paths || {};
  const located = {}; // file name -> what the glue should fetch or spawn it from
  for (const role of Object.keys(paths)) {
    located[basename(paths[role])] = IS_NODE ? paths[role] : io.url(role);
  }
  const glueUrl = io.url('glue');
  if (IS_NODE) await nodeGlobals(paths.glue);
  let glue;
  try {
    glue = await import(glueUrl);
  } catch (err) {
    const cls = err?.constructor?.name ?? 'Error';
    throw new HarnessError('HostError', `the glue ${basename(paths.glue)} threw on import: ${cls}: ${err?.message ?? err}`);
  }
  const factory = glue.default;
  if (typeof factory !== 'function') {
    throw new HarnessError('MissingExport', `the glue ${basename(paths.glue)} has no default export factory (build with -sMODULARIZE -sEXPORT_ES6)`);
  }
  // A -pthread glue shares its memory with its workers through a SharedArrayBuffer; without one
  // (a page served without COOP/COEP) it would fail somewhere inside the glue, or wait on a
  // pool that never starts. Said here, in the engine's terms, before the factory runs.
  if ((entry.features || []).includes('pthread') && typeof SharedArrayBuffer !== 'function') {
    const isolated = globalThis.crossOriginIsolated === true;
    throw new HarnessError('IncompatibleArtifact', `${entry.name} is a -pthread build and this context has no SharedArrayBuffer (crossOriginIsolated: ${isolated})`);
  }
  const wasmBinary = await io.bytes('wasm');
  const settings = {
    wasmBinary,
    // A name outside the set would be fetched relative to the page or the cwd: found by luck
    // or not at all (Node: "The worker script ... must be an absolute path"; Chromium: an
    // uncaught Event from the pthread Worker, no name). It means the set lacks a file the glue
    // needs, e.g. a -pthread worker listed under another name: say which, at the load.
    locateFile: (name) => {
      if (Object.hasOwn(located, name)) return located[name];
      throw new HarnessError('HostError', `the glue asks for ${name}, which is not a file of the artifact (${Object.keys(located).join(', ')}); a -pthread build's worker .js is listed as role "worker" under the name the glue was built with`);
    },
    mainScriptUrlOrBlob: glueUrl, // what a pthread worker imports (the glue)
    print: (...a) => console.error(...a), // stdout is the Node worker's protocol channel
    printErr: (...a) => console.error(...a),
  };
  let Module;
  try {
    const made = factory(settings);
    Module = await withTimeout(Promise.resolve(made), options.loadTimeoutMs, `the emscripten factory of ${entry.name}`);
  } catch (err) {
    throw engineError(err, entry.name);
  }
  const heap = () => {
    const h = Module.HEAPU8;
    if (h instanceof Uint8Array) return h;
    throw new HarnessError('MissingExport', 'the Module exposes no HEAPU8 (build with -sEXPORTED_RUNTIME_METHODS=HEAPU8)');
  };
  heap(); // fail the load, not the first read, when the glue does not export it
  const pool = Module.PThread; // a -pthread glue's worker pool (3.1.x puts it on the Module)
  return {
    lookup: (name) => Module[`_${name}`],
    heap,
    checkArity: false, // the glue's wrappers take `...args`: arity comes from the static check
    info: { pthread_workers: pool ? pool.unusedWorkers.length + pool.runningWorkers.length : 0 },
  };
}
