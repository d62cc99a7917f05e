// Main thread of the Chromium host page. harness/hosts/chromium.py calls window.tg.* through
// page.evaluate; each call resolves to a plain object and never rejects: {ok: true, ...} or
// {error: <HostError class>, message}. Arrays cross as base64. The artifact itself runs in a
// dedicated module worker (chromium_worker.mjs, same driver.mjs as Node) so a hung kernel is
// stopped by terminating that worker after the call's timeout.

import { measureClockResolutionNs } from './driver.mjs';

const WORKER_URL = new URL('./chromium_worker.mjs', import.meta.url);

function toBase64(bytes) {
  if (typeof bytes.toBase64 === 'function') return bytes.toBase64();
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(text) {
  if (typeof Uint8Array.fromBase64 === 'function') return Uint8Array.fromBase64(text);
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** One dedicated worker; after a timeout or a worker crash every request gets an error. */
class WorkerSession {
  constructor() {
    this.worker = new Worker(WORKER_URL, { type: 'module' });
    this.pending = new Map();
    this.nextId = 1;
    this.lost = null;
    this.instanceId = null; // set by load; every later request names it
    this.worker.onmessage = (event) => {
      const { id, ok, header, blob } = event.data;
      const entry = this.pending.get(id);
      if (entry === undefined) return;
      this.pending.delete(id);
      clearTimeout(entry.timer);
      entry.resolve(ok ? { ok: true, header, blob } : header);
    };
    this.worker.onerror = (event) => this.fail('HostCrashed', `worker error: ${event.message}`);
  }

  fail(kind, message) {
    this.lost = message;
    for (const entry of this.pending.values()) {
      clearTimeout(entry.timer);
      entry.resolve({ error: kind, message });
    }
    this.pending.clear();
  }

  request(op, header, blob, timeoutMs) {
    if (this.lost !== null) {
      return Promise.resolve({ error: 'HostCrashed', message: `instance lost: ${this.lost}` });
    }
    return new Promise((resolve) => {
      const id = this.nextId++;
      const timer = setTimeout(() => {
        this.worker.terminate();
        const what = header.name ? `${op} ${header.name}` : op;
        this.fail('HostTimeout', `${what} did not return within ${timeoutMs} ms; its worker was terminated`);
      }, timeoutMs);
      this.pending.set(id, { resolve, timer });
      const message = { id, op, header: { ...header, instance: this.instanceId }, blob };
      this.worker.postMessage(message, blob ? [blob.buffer] : []);
    });
  }
}

let session = null;

function need() {
  if (session === null) return { error: 'HostError', message: 'no artifact loaded in this page' };
  return null;
}

window.tg = {
  async load(entry, options, timeoutMs) {
    // the worker fetches the artifact's files itself (entry.urls): a format's glue may need
    // more than one, by URL
    session = new WorkerSession();
    const hello = await session.request('hello', {}, null, timeoutMs);
    if (!hello.ok) return hello;
    const reply = await session.request('load', { artifact: entry, options }, null, timeoutMs);
    if (!reply.ok) return reply;
    session.instanceId = reply.header.instance;
    return { ok: true, header: { ...reply.header, worker: hello.header } };
  },
  async call(name, args, timeoutMs) {
    return need() || session.request('call', { name, args }, null, timeoutMs);
  },
  async write(ptr, text, timeoutMs) {
    return need() || session.request('write', { ptr }, fromBase64(text), timeoutMs);
  },
  async read(ptr, n, timeoutMs) {
    const reply = need() || (await session.request('read', { ptr, n }, null, timeoutMs));
    return reply.ok ? { ok: true, b64: toBase64(reply.blob) } : reply;
  },
  async time(header, timeoutMs) {
    const reply = need() || (await session.request('time', header, null, timeoutMs));
    return reply.ok ? { ok: true, header: reply.header, b64: toBase64(reply.blob) } : reply;
  },
  async noop(timeoutMs) {
    return need() || session.request('noop', {}, null, timeoutMs);
  },
  async probe(header, timeoutMs) {
    const reply = need() || (await session.request('probe', header, null, timeoutMs));
    return reply.ok ? { ok: true, header: reply.header, b64: toBase64(reply.blob) } : reply;
  },
  async unload(timeoutMs) {
    return need() || session.request('unload', {}, null, timeoutMs);
  },
};

window.tgReady = Promise.resolve({
  crossOriginIsolated: window.crossOriginIsolated === true,
  sharedArrayBuffer: typeof SharedArrayBuffer === 'function',
  clockResolutionNs: measureClockResolutionNs(),
  userAgent: navigator.userAgent,
});
