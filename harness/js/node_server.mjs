// Node worker: speaks the framed protocol of docs/protocol.md on stdin/stdout (one request, one
// reply, in order) and runs the ops of session.mjs. Started by harness/hosts/node.py as
// `node node_server.mjs`; a trap in a kernel is an error reply, a crash or hang kills only this
// process.

import fs from 'node:fs';
import { pathToFileURL } from 'node:url';
import { HarnessError } from './driver.mjs';
import { Session, errorReply } from './session.mjs';

const PROTOCOL_VERSION = 1;
const OP = {
  HELLO: 0x01, LOAD: 0x02, CALL: 0x03, WRITE: 0x04, READ: 0x05, TIME: 0x06, NOOP: 0x07,
  UNLOAD: 0x08, SHUTDOWN: 0x09, PROBE: 0x0A, PAIRS: 0x0B, OK: 0x80, ERROR: 0x81,
};

// Anything printed to stdout would corrupt the frame stream, so the console goes to stderr.
console.log = console.error;
console.info = console.error;

function readExact(n) {
  const buf = Buffer.allocUnsafe(n);
  let got = 0;
  while (got < n) {
    let r;
    try {
      r = fs.readSync(0, buf, got, n - got, null);
    } catch (err) {
      if (err.code === 'EAGAIN') continue;
      if (err.code === 'EOF') return null;
      throw err;
    }
    if (r === 0) return null; // the client closed stdin: exit quietly
    got += r;
  }
  return buf;
}

function writeAll(buf) {
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(1, buf, off, buf.length - off);
    } catch (err) {
      if (err.code !== 'EAGAIN') throw err;
    }
  }
}

function sendFrame(op, header, blob) {
  const head = header && Object.keys(header).length ? Buffer.from(JSON.stringify(header)) : Buffer.alloc(0);
  const body = blob ? Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength) : Buffer.alloc(0);
  const pre = Buffer.allocUnsafe(9);
  pre.writeUInt32LE(1 + 4 + head.length + body.length, 0);
  pre.writeUInt8(op, 4);
  pre.writeUInt32LE(head.length, 5);
  writeAll(Buffer.concat([pre, head, body]));
}

function readFrame() {
  const pre = readExact(5);
  if (pre === null) return null;
  const length = pre.readUInt32LE(0);
  const op = pre.readUInt8(4);
  const payload = readExact(length - 1);
  if (payload === null) return null;
  const headLen = payload.readUInt32LE(0);
  const header = headLen ? JSON.parse(payload.subarray(4, 4 + headLen).toString('utf8')) : {};
  return { op, header, blob: payload.subarray(4 + headLen) };
}

/** File access by role for an entry whose files are local paths (`entry.paths`). */
function fileIO(entry) {
  const path = (role) => {
    const p = (entry.paths || {})[role];
    if (p === undefined) throw new HarnessError('HostError', `${entry.name}: no ${role} file in the entry`);
    return p;
  };
  return {
    path,
    url: (role) => pathToFileURL(path(role)).href,
    bytes: async (role) => fs.readFileSync(path(role)),
  };
}

async function handle(session, { op, header, blob }) {
  switch (op) {
    case OP.HELLO:
      return {
        header: {
          protocol: PROTOCOL_VERSION,
          runtime: 'node',
          version: process.version,
          v8: process.versions.v8,
          pid: process.pid,
          clock: 'performance.now',
          clock_resolution_ns: session.clockResolution(),
        },
      };
    case OP.LOAD:
      return session.load(header, fileIO(header.artifact));
    case OP.CALL:
      return session.call(header);
    case OP.WRITE:
      return session.write(header, blob);
    case OP.READ:
      return session.read(header);
    case OP.TIME:
      return session.time(header);
    case OP.NOOP:
      return { header: {} };
    case OP.UNLOAD:
      return session.unload(header);
    case OP.PROBE:
      return session.probe(header);
    case OP.PAIRS:
      return session.pairs(header);
    default:
      return { header: { error: 'HostError', engine_error: 'Protocol', message: `unknown opcode ${op}` }, isError: true };
  }
}

async function main() {
  const session = new Session();
  for (;;) {
    const frame = readFrame();
    if (frame === null) return;
    if (frame.op === OP.SHUTDOWN) {
      sendFrame(OP.OK, {});
      return;
    }
    let reply;
    try {
      reply = await handle(session, frame);
    } catch (err) {
      reply = { header: errorReply(err), isError: true };
    }
    sendFrame(reply.isError ? OP.ERROR : OP.OK, reply.header, reply.blob);
  }
}

await main();
// A module's own threads (an emscripten pthread pool) would keep the process alive after the
// harness closed the pipe: the protocol is over, so exit.
process.exit(0);
