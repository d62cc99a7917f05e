// Dedicated worker of one page: holds one loaded artifact and runs the session.mjs ops that
// page.mjs posts. Running kernels here rather than on the page's main thread lets the page stop
// a hung kernel with worker.terminate() and still answer the harness.

import { Session, errorReply, urlIO } from './session.mjs';

const session = new Session();

async function run(op, header, blob) {
  switch (op) {
    case 'hello': {
      // the page's measured resolution holds here too when this worker is as isolated as the
      // page (page.mjs, pageClock); otherwise this worker measures its own
      const isolated = self.crossOriginIsolated === true;
      const page = header.page;
      if (page && page.crossOriginIsolated === isolated && page.resolutionNs > 0) {
        session.clockResolutionNs = page.resolutionNs;
      }
      return {
        header: {
          crossOriginIsolated: isolated,
          clock_resolution_ns: session.clockResolution(),
          clock_from_page: session.clockResolutionNs === (page && page.resolutionNs),
        },
      };
    }
    case 'load':
      return session.load(header, urlIO(header.artifact));
    case 'call':
      return session.call(header);
    case 'write':
      return session.write(header, blob);
    case 'read':
      return session.read(header);
    case 'time':
      return session.time(header);
    case 'pairs':
      return session.pairs(header);
    case 'noop':
      return { header: {} };
    case 'unload':
      return session.unload(header);
    case 'probe':
      return session.probe(header);
    default:
      throw new Error(`unknown op ${op}`);
  }
}

self.onmessage = async (event) => {
  const { id, op, header, blob } = event.data;
  try {
    const reply = await run(op, header, blob);
    const transfer = reply.blob ? [reply.blob.buffer] : [];
    self.postMessage({ id, ok: true, header: reply.header, blob: reply.blob }, transfer);
  } catch (err) {
    self.postMessage({ id, ok: false, header: errorReply(err) });
  }
};
