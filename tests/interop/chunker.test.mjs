// The web page's FastCDC chunker (ui/chunker.js) cuts exactly where the
// server and the Rust and Python clients cut:
//   1. the golden vectors the Python client's port is checked against (read
//      from that file, so both are held to the same numbers), whole and
//      block by block as the page's hashing worker feeds it;
//   2. a file the server cut itself (a plain upload): the page's cuts and
//      BLAKE3 ids equal the server's manifest, and the missing-chunks query
//      finds nothing to send.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { blake3 } from 'hash-wasm';
import { deterministicBytes } from './lib/data.mjs';
import { getJson, startDepot } from './lib/depot.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const chunker = require('../../ui/chunker.js');

/** GOLDEN from clients/python/depot_client/fastcdc.py: [[size, [min, avg, max], [cumulative cuts…]], …]. */
function goldenVectors() {
  const src = readFileSync(join(here, '../../clients/python/depot_client/fastcdc.py'), 'utf8');
  const m = /^GOLDEN = \(([\s\S]*?)^\)$/m.exec(src);
  assert.ok(m, 'GOLDEN in the Python chunker');
  const json = `[${m[1]}]`
    .replace(/#.*$/gm, '')
    .replace(/\(/g, '[')
    .replace(/\)/g, ']')
    .replace(/(\d)_(?=\d)/g, '$1')
    .replace(/,(\s*\])/g, '$1');
  return JSON.parse(json);
}

/** The golden vectors' input: xorshift64 (13/7/17), one byte (bits 32..39) per step. */
function xorshiftBytes(n) {
  const out = new Uint8Array(n);
  const M = (1n << 64n) - 1n;
  let x = 0x9e3779b97f4a7c15n;
  for (let i = 0; i < n; i++) {
    x ^= (x << 13n) & M;
    x ^= x >> 7n;
    x ^= (x << 17n) & M;
    out[i] = Number((x >> 32n) & 0xffn);
  }
  return out;
}

const cumulative = (lengths) => {
  let total = 0;
  return lengths.map((n) => (total += n));
};

/** Block by block, the way ui/hash-worker.js reads a File: the uncut tail is carried. */
function streamLengths(data, p, block) {
  const lengths = [];
  let tail = new Uint8Array(0);
  for (let pos = 0; pos < data.length || tail.length; ) {
    const more = data.subarray(pos, pos + block);
    pos += more.length;
    const eof = pos >= data.length;
    const buf = new Uint8Array(tail.length + more.length);
    buf.set(tail);
    buf.set(more, tail.length);
    const { lengths: got, used } = chunker.cutBlock(buf, p, eof);
    lengths.push(...got);
    tail = buf.slice(used);
    if (eof) {
      assert.equal(tail.length, 0, 'nothing left over at the end');
      break;
    }
  }
  return lengths;
}

describe('the web page\'s FastCDC chunker', () => {
  const golden = goldenVectors();

  it('reads both golden vectors from the Python client', () => {
    assert.equal(golden.length, 2);
    assert.deepEqual(golden[1][1], [65536, 262144, 1048576], 'the server\'s default sizes are among them');
  });

  for (const [size, [min, avg, max], want] of goldenVectors()) {
    it(`cuts ${size} bytes with ${min}/${avg}/${max} at the golden offsets, whole and streamed`, () => {
      const data = xorshiftBytes(size);
      const p = chunker.params(min, avg, max);
      assert.deepEqual(cumulative(chunker.chunkLengths(data, p)), want, 'whole input');
      for (const block of [max, 3 * max + 17, 8 << 20]) {
        assert.deepEqual(cumulative(streamLengths(data, p, block)), want, `blocks of ${block}`);
      }
    });
  }

  it('refuses sizes the server would refuse', () => {
    assert.throws(() => chunker.params(65536, 65536, 1048576), RangeError);
    assert.throws(() => chunker.params(32, 256, 1024), RangeError);
  });

  describe('against a running depot', { timeout: 60_000 }, () => {
    let depot;
    before(async () => {
      depot = await startDepot({ auth: 'local' });
    });
    after(async () => {
      await depot?.stop();
    });

    it('cuts and hashes a 6 MiB file exactly as the server did: nothing is missing', async () => {
      const info = await getJson(depot.url, '/api/chunking');
      const bytes = deterministicBytes('chunker-6MiB', 6 << 20);
      const up = await fetch(`${depot.url}/api/files/upload?filename=cut.bin`, { method: 'POST', body: bytes });
      assert.equal(up.status, 201, await up.clone().text());
      const file = await up.json();
      const manifest = await getJson(depot.url, `/api/files/${file.id}/manifest`);

      const p = chunker.params(info.min, info.avg, info.max);
      const lengths = streamLengths(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length), p, 8 << 20);
      let offset = 0;
      const mine = [];
      for (const len of lengths) {
        mine.push({ hash: await blake3(bytes.subarray(offset, offset + len)), offset, len });
        offset += len;
      }
      assert.deepEqual(mine, manifest.chunks, 'cut points and BLAKE3 ids equal the server\'s manifest');

      const res = await fetch(`${depot.url}/api/chunks/missing`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ hashes: mine.map((c) => c.hash) }),
      });
      assert.equal(res.status, 200);
      assert.deepEqual((await res.json()).missing, [], 'the server has every chunk the page cut');
    });
  });
});
