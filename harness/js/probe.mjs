// Host-cost probes of the overhead decomposition (issue 13, docs/threads.md): what a threaded
// kernel call pays in this JS engine besides its kernel, measured here, inside the host, with a
// helper worker of the engine's own kind (Node worker_threads, a browser Worker):
// - 'atomics': one Atomics.notify -> the worker wakes from Atomics.wait -> it notifies back ->
//   this thread wakes. An emscripten -pthread kernel split onto a sleeping pool worker pays
//   this, once per parallel region (its futexes are Atomics.wait/notify).
// - 'postmessage': one structured-clone message to the worker and its echo back: what a host
//   that drives the module across a worker boundary (the Chromium page) pays per request.
// Each sample is the mean of `reps` round trips timed with performance.now(), in ns, after
// `warmup` untimed ones (at least 3: a fresh helper's first wakes are not the steady state).

import { HarnessError } from './driver.mjs';

const IS_NODE = typeof process === 'object' && typeof process.versions?.node === 'string';

// The worker's side of both probes; `on(handler)` and `send(value)` adapt it to Node or the web.
const ECHO = `
function serve(on, send) {
  on((data) => {
    if (data && data.sab) {
      const a = new Int32Array(data.sab);
      send('ready');
      for (;;) {
        Atomics.wait(a, 0, 0); // sleep until the main thread sets the flag
        if (Atomics.load(a, 1) === 1) return;
        Atomics.store(a, 0, 0);
        Atomics.notify(a, 0);
      }
    }
    send(data);
  });
}
`;

async function startWorker() {
  if (IS_NODE) {
    const { Worker } = await import('node:worker_threads');
    const code = `${ECHO}\nconst { parentPort } = require('node:worker_threads');\n`
      + 'serve((h) => parentPort.on("message", h), (v) => parentPort.postMessage(v));';
    const w = new Worker(code, { eval: true });
    return { post: (v) => w.postMessage(v), next: () => new Promise((r) => w.once('message', r)), stop: () => w.terminate() };
  }
  const code = `${ECHO}\nserve((h) => { self.onmessage = (e) => h(e.data); }, (v) => self.postMessage(v));`;
  const url = URL.createObjectURL(new Blob([code], { type: 'text/javascript' }));
  const w = new Worker(url);
  URL.revokeObjectURL(url);
  let waiting = null;
  w.onmessage = (e) => { const r = waiting; waiting = null; if (r) r(e.data); };
  return {
    post: (v) => w.postMessage(v),
    next: () => new Promise((r) => { waiting = r; }),
    stop: () => w.terminate(),
  };
}

async function atomicsSamples(worker, samples, reps, warmup) {
  if (typeof SharedArrayBuffer !== 'function') {
    throw new HarnessError('HostError', 'no SharedArrayBuffer here (crossOriginIsolated is not true): Atomics.wait/notify cannot be measured');
  }
  const a = new Int32Array(new SharedArrayBuffer(8));
  const ready = worker.next();
  worker.post({ sab: a.buffer });
  await ready;
  const out = new Float64Array(samples);
  const once = () => {
    Atomics.store(a, 0, 1);
    Atomics.notify(a, 0);
    Atomics.wait(a, 0, 1); // until the worker has cleared the flag
  };
  for (let i = 0; i < warmup; i++) once();
  for (let s = 0; s < samples; s++) {
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) once();
    out[s] = ((performance.now() - t0) * 1e6) / reps;
  }
  Atomics.store(a, 1, 1);
  Atomics.store(a, 0, 1);
  Atomics.notify(a, 0);
  return out;
}

async function postMessageSamples(worker, samples, reps, warmup) {
  const out = new Float64Array(samples);
  for (let i = 0; i < warmup; i++) { const p = worker.next(); worker.post(i); await p; }
  for (let s = 0; s < samples; s++) {
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) { const p = worker.next(); worker.post(r); await p; }
    out[s] = ((performance.now() - t0) * 1e6) / reps;
  }
  return out;
}

/** `samples` means of `reps` round trips of probe `kind` ('atomics' | 'postmessage'), in ns,
 * after max(3, `warmup`) untimed round trips. */
export async function probe(kind, samples, reps, warmup = 0) {
  const measure = { atomics: atomicsSamples, postmessage: postMessageSamples }[kind];
  if (measure === undefined) throw new HarnessError('HostError', `unknown probe ${kind}; known: atomics, postmessage`);
  const worker = await startWorker();
  try {
    return await measure(worker, samples, reps, Math.max(3, warmup | 0));
  } finally {
    worker.stop();
  }
}
