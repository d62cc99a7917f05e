// Main thread of the Chromium host page. harness/hosts/chromium.py calls window.tg.* through
// page.evaluate; each call resolves to a plain object and never rejects: {ok: true, ...} or
// {error: <HostError class>, message}. Arrays cross as base64. Each loaded artifact runs in a
// dedicated module worker of its own (chromium_worker.mjs, same driver.mjs as Node) so a hung
// kernel is stopped by terminating that worker after the call's timeout. One page holds several
// such instances, each named by its slot (load's reply; every other call's first argument):
// opening a page costs ~0.7 s, a worker far less, and the paired gate loads 24 instances a cell.

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

let nextWorker = 1;

/** One dedicated worker, holding the instances of one slot or of a group of slots; after a
 * timeout or a worker crash every request gets an error. */
class WorkerSession {
  constructor() {
    this.worker = new Worker(WORKER_URL, { type: 'module' });
    this.id = nextWorker++;
    this.pending = new Map();
    this.nextId = 1;
    this.lost = null;
    this.hello = null; // the worker's hello header
    this.slots = 0; // slots whose instance lives in this worker
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
      const message = { id, op, header, blob };
      this.worker.postMessage(message, blob ? [blob.buffer] : []);
    });
  }
}

const slots = new Map(); // slot -> {session: WorkerSession, instance: its id in that worker}
const groups = new Map(); // group name -> the WorkerSession every load of that group goes into
let nextSlot = 1;

// Written buffers kept by content (their sha256, named by the caller), least recently used out
// first past BLOB_CACHE_BYTES: a write of bytes the page already holds crosses as its key alone.
// The paired gate places the same seeded inputs again in every block (24 placements a
// measurement); as base64 through Playwright, its driver and CDP, a 230 KB buffer took ~16 ms a
// write on s35's VM and its key ~3 ms (harness/hosts/chromium.py, ChromiumInstance.write).
const BLOB_CACHE_BYTES = 64 * 1024 * 1024;
const blobs = new Map(); // key -> Uint8Array, in order of last use
let blobBytes = 0;

function keepBlob(key, bytes) {
  if (bytes.length > BLOB_CACHE_BYTES || blobs.has(key)) return;
  blobs.set(key, bytes);
  blobBytes += bytes.length;
  for (const [old, held] of blobs) {
    if (blobBytes <= BLOB_CACHE_BYTES) break;
    blobs.delete(old);
    blobBytes -= held.length;
  }
}

function heldBlob(key) {
  const bytes = blobs.get(key);
  if (bytes !== undefined) { // most recently used now
    blobs.delete(key);
    blobs.set(key, bytes);
  }
  return bytes;
}

function noSlot(slot) {
  return { error: 'HostError', message: `no artifact loaded in slot ${slot} of this page` };
}

/** fn(session, header) for slot's worker, the header naming slot's instance there. */
function withSlot(slot, header, fn) {
  const entry = slots.get(slot);
  if (entry === undefined) return Promise.resolve(noSlot(slot));
  return fn(entry.session, { ...header, instance: entry.instance });
}

/** A worker that said hello, or the error reply that ended it. */
async function startWorker(timeoutMs) {
  const session = new WorkerSession();
  const hello = await session.request('hello', { page: pageClock }, null, timeoutMs);
  if (!hello.ok) {
    session.worker.terminate();
    return { error: hello };
  }
  session.hello = hello.header;
  return { session };
}

/** End `session`'s worker (and every instance in it), and forget its group. */
function endWorker(session, why) {
  for (const [group, held] of groups) if (held === session) groups.delete(group);
  session.fail('HostError', why);
  session.worker.terminate();
}

window.tg = {
  // group (optional): load into the worker that holds the group's other instances (a fresh one
  // for the group's first load, or when that worker was lost) rather than a worker of its own.
  // Instances in one worker can be timed side by side in one request (pairs); a hung call or a
  // crash there ends all of them.
  async load(entry, options, group, timeoutMs) {
    // the worker fetches the artifact's files itself (entry.urls): a format's glue may need
    // more than one, by URL
    let session = group ? groups.get(group) : undefined;
    if (session !== undefined && session.lost !== null) {
      groups.delete(group);
      session = undefined;
    }
    if (session === undefined) {
      const started = await startWorker(timeoutMs);
      if (started.error) return started.error;
      session = started.session;
      if (group) groups.set(group, session);
    }
    const reply = await session.request('load', { artifact: entry, options }, null, timeoutMs);
    if (!reply.ok) {
      // a worker holding nothing else is ended with the load; a group's goes on with the rest
      if (session.slots === 0) endWorker(session, 'its load failed');
      return reply;
    }
    session.slots += 1;
    const slot = nextSlot++;
    slots.set(slot, { session, instance: reply.header.instance });
    return { ok: true, slot, header: { ...reply.header, worker: { ...session.hello, id: session.id } } };
  },
  async call(slot, name, args, timeoutMs) {
    return withSlot(slot, { name, args }, (s, h) => s.request('call', h, null, timeoutMs));
  },
  // Call `name` once per entry of argsList, in order, stopping at the first error reply (returned,
  // with how many calls returned before it); {ok: true, results} when every call did.
  async callEach(slot, name, argsList, timeoutMs) {
    const results = [];
    for (const args of argsList) {
      const reply = await withSlot(slot, { name, args }, (s, h) => s.request('call', h, null, timeoutMs));
      if (!reply.ok) return { ...reply, message: `${reply.message} (after ${results.length} of ${argsList.length} calls)` };
      results.push(reply.header.result);
    }
    return { ok: true, results };
  },
  // key (optional): the bytes' sha256, to keep them for writeKey
  async write(slot, ptr, text, key, timeoutMs) {
    const bytes = fromBase64(text);
    if (key) keepBlob(key, bytes.slice());  // the request transfers (detaches) its own buffer
    return withSlot(slot, { ptr }, (s, h) => s.request('write', h, bytes, timeoutMs));
  },
  // Write bytes an earlier write(..., key) left here; {ok: true, miss: true}, writing nothing,
  // when the page no longer holds them.
  async writeKey(slot, ptr, key, timeoutMs) {
    const bytes = heldBlob(key);
    if (bytes === undefined) return { ok: true, miss: true };
    return withSlot(slot, { ptr }, (s, h) => s.request('write', h, bytes.slice(), timeoutMs));
  },
  // Allocate a buffer for each item (allocName called with counts[i]) and write the item's
  // bytes into it: item.b64 (kept under item.key when given), or the bytes an earlier write
  // kept under item.key. {ok: true, ptrs, missed}: missed lists the items whose key the page no
  // longer holds (allocated, left unwritten: the caller writes them). On a failed call, or an
  // allocation returning 0, every buffer allocated is freed (freeName) and the error returned:
  // one request per block's placement, where a request per alloc and per write took ~3 ms each
  // on s35's VM.
  async place(slot, allocName, freeName, counts, items, timeoutMs) {
    const ptrs = [];
    const missed = [];
    const undo = async (reply) => {
      for (const ptr of ptrs) {
        await withSlot(slot, { name: freeName, args: [ptr] }, (s, h) => s.request('call', h, null, timeoutMs));
      }
      return reply;
    };
    for (let i = 0; i < items.length; i++) {
      const made = await withSlot(slot, { name: allocName, args: [counts[i]] }, (s, h) => s.request('call', h, null, timeoutMs));
      if (!made.ok) return undo(made);
      const ptr = made.header.result;
      if (ptr === 0 || ptr === '0' || ptr === null || ptr === undefined) {
        return undo({ error: 'HostError', message: `${allocName}(${counts[i]}) returned 0 (out of memory)` });
      }
      ptrs.push(ptr);
      const item = items[i];
      let bytes;
      if (item.b64 !== undefined) {
        bytes = fromBase64(item.b64);
        if (item.key) keepBlob(item.key, bytes.slice());  // the request detaches its own buffer
      } else {
        const held = heldBlob(item.key);
        if (held === undefined) {
          missed.push(i);
          continue;
        }
        bytes = held.slice();
      }
      const wrote = await withSlot(slot, { ptr }, (s, h) => s.request('write', h, bytes, timeoutMs));
      if (!wrote.ok) return undo(wrote);
    }
    return { ok: true, ptrs, missed };
  },
  async read(slot, ptr, n, timeoutMs) {
    const reply = await withSlot(slot, { ptr, n }, (s, h) => s.request('read', h, null, timeoutMs));
    return reply.ok ? { ok: true, b64: toBase64(reply.blob) } : reply;
  },
  async time(slot, header, timeoutMs) {
    const reply = await withSlot(slot, header, (s, h) => s.request('time', h, null, timeoutMs));
    return reply.ok ? { ok: true, header: reply.header, b64: toBase64(reply.blob) } : reply;
  },
  // Two slots of one worker timed side by side in one request (session.mjs, pairs): header
  // as there, with first and second naming an export and its args, not an instance.
  async pairs(first, second, header, timeoutMs) {
    const a = slots.get(first);
    const b = slots.get(second);
    if (a === undefined || b === undefined) return noSlot(a === undefined ? first : second);
    if (a.session !== b.session) {
      return { error: 'HostError', message: `slots ${first} and ${second} are in different workers; pairs times two instances of one worker` };
    }
    const sides = { first: { ...header.first, instance: a.instance }, second: { ...header.second, instance: b.instance } };
    const reply = await a.session.request('pairs', { ...header, ...sides }, null, timeoutMs);
    return reply.ok ? { ok: true, header: reply.header, b64: toBase64(reply.blob) } : reply;
  },
  async noop(slot, timeoutMs) {
    return withSlot(slot, {}, (s, h) => s.request('noop', h, null, timeoutMs));
  },
  async probe(slot, header, timeoutMs) {
    const reply = await withSlot(slot, header, (s, h) => s.request('probe', h, null, timeoutMs));
    return reply.ok ? { ok: true, header: reply.header, b64: toBase64(reply.blob) } : reply;
  },
  async unload(slot, timeoutMs) {
    return withSlot(slot, {}, (s, h) => s.request('unload', h, null, timeoutMs));
  },
  // Ends slot's instance: with its worker (and memory) when no other slot is in that worker,
  // else by unloading it there. The page and its other slots go on.
  async drop(slot, timeoutMs) {
    const entry = slots.get(slot);
    if (entry !== undefined) {
      slots.delete(slot);
      const { session, instance } = entry;
      session.slots -= 1;
      if (session.slots === 0) endWorker(session, 'instance closed');
      else if (session.lost === null) await session.request('unload', { instance }, null, timeoutMs);
    }
    return { ok: true, slots: slots.size };
  },
};

// The page's clock, measured once (up to 100 ms of reads): a worker as cross-origin isolated as
// its page takes this resolution instead of measuring its own (chromium_worker.mjs, hello),
// since Chromium coarsens performance.now() by the isolation of the context. Measured in every
// worker, it took ~100 of a load's ~160 ms on s35's VM, and the paired gate loads 8-24
// instances a cell.
const pageClock = {
  crossOriginIsolated: window.crossOriginIsolated === true,
  resolutionNs: measureClockResolutionNs(),
};

window.tgReady = Promise.resolve({
  crossOriginIsolated: pageClock.crossOriginIsolated,
  sharedArrayBuffer: typeof SharedArrayBuffer === 'function',
  clockResolutionNs: pageClock.resolutionNs,
  userAgent: navigator.userAgent,
});
