// The page's hashing worker: reads a File block by block, cuts it with
// FastCDC (chunker.js) and hashes each chunk with BLAKE3 (hash-wasm), off
// the page's thread so the page stays responsive.
//
// In:  { file, min, avg, max }
// Out: { type: 'chunks', chunks: [[hash, len], …], done: bytes so far }, one
//      message per block; then { type: 'end' }, or { type: 'error', message }.
/* global hashwasm, DepotChunker */
'use strict';
importScripts('vendor/blake3.umd.min.js', 'chunker.js');

const BLOCK = 8 << 20;

self.onmessage = async (e) => {
  const { file, min, avg, max } = e.data;
  try {
    const p = DepotChunker.params(min, avg, max);
    const hasher = await hashwasm.createBLAKE3();
    let tail = new Uint8Array(0);
    let done = 0;
    for (let pos = 0; ; ) {
      const more = new Uint8Array(await file.slice(pos, pos + BLOCK).arrayBuffer());
      pos += more.length;
      const eof = pos >= file.size || more.length === 0;
      let buf = more;
      if (tail.length) {
        buf = new Uint8Array(tail.length + more.length);
        buf.set(tail);
        buf.set(more, tail.length);
      }
      const { lengths, used } = DepotChunker.cutBlock(buf, p, eof);
      const chunks = [];
      let o = 0;
      for (const len of lengths) {
        hasher.init();
        hasher.update(buf.subarray(o, o + len));
        chunks.push([hasher.digest('hex'), len]);
        o += len;
      }
      done += used;
      self.postMessage({ type: 'chunks', chunks, done });
      tail = buf.slice(used);
      if (eof) break;
    }
    self.postMessage({ type: 'end' });
  } catch (err) {
    self.postMessage({ type: 'error', message: String((err && err.message) || err) });
  }
};
