// Loader of the `wasm` format (harness/formats/wasm.py): one freestanding module, no imports,
// exporting its linear memory as `memory` and the ABI under the header's names.

import { HarnessError } from './driver.mjs';

/** Compile and instantiate the module; hand its exports and memory to the driver. */
export async function open(entry, io) {
  const bytes = await io.bytes('wasm');
  const module = await WebAssembly.compile(bytes);
  const instance = await WebAssembly.instantiate(module, {});
  const exports = instance.exports;
  if (!(exports.memory instanceof WebAssembly.Memory)) {
    throw new HarnessError('MissingExport', 'the module exports no memory named "memory"');
  }
  return {
    lookup: (name) => exports[name],
    heap: () => new Uint8Array(exports.memory.buffer),
    checkArity: true, // a wasm export's `length` is its arity
  };
}
