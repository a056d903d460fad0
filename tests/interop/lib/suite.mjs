// The upload scenario, run once per library (resumable.js, flow.js):
//   1. a 5 MiB file in 1 MiB pieces, cross-origin and preflighted: every
//      piece tested (204) and sent; the server rebuilds the file exactly;
//   2. the same file again from a fresh page: every test answers 200, no
//      piece is sent, nothing new is stored;
//   3. the same bytes under another name, each piece's BLAKE3 sent with its
//      test: the store recognises every piece, no piece is sent, and the new
//      file exists with the same bytes;
//   4. (token mode) the same upload without the token: every request answers
//      401, the library gives up at once (401 is in permanentErrors) and
//      nothing is stored.
// Every upload sends the token in the library's `headers` option.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { blake3 } from 'hash-wasm';
import { launchBrowser } from './browser.mjs';
import { deterministicBytes, sha256 } from './data.mjs';
import { getBytes, getJson, startDepot } from './depot.mjs';
import { uploadInPage } from './drive.mjs';
import { startStaticServer } from './static-server.mjs';

const MiB = 1024 * 1024;
const PIECE = MiB;
const SIZE = 5 * MiB;
const PIECES = SIZE / PIECE;
const CHUNKED = '/api/files/upload/chunked';

function param(url, name) {
  return new URL(url).searchParams.get(name);
}

function json(exchange) {
  try {
    return JSON.parse(exchange.body);
  } catch {
    assert.fail(`${exchange.method} ${exchange.url} answered ${exchange.status} with non-JSON: ${exchange.body}`);
  }
}

const upTo = (n) => Array.from({ length: n }, (_, i) => i + 1);
const numeric = (xs) => [...xs].sort((a, b) => a - b);

function byMethod(exchanges, method) {
  return exchanges.filter((x) => x.method === method);
}

/** Each piece number 1..PIECES tested exactly once, by the URL's query. */
function assertEachPieceTestedOnce(gets, prefix) {
  const numbers = numeric(gets.map((x) => Number(param(x.url, `${prefix}ChunkNumber`))));
  assert.deepEqual(numbers, upTo(PIECES), 'piece numbers of the test GETs');
}

function assertSameStats(now, before, what) {
  for (const k of ['files', 'logical_bytes', 'unique_chunks', 'unique_bytes', 'stored_bytes']) {
    assert.equal(now[k], before[k], `${what}: stats.${k}`);
  }
}

export function librarySuite(lib) {
  const prefix = lib === 'resumable' ? 'resumable' : 'flow';

  describe(`${lib} against depot's chunked upload`, { timeout: 90_000 }, () => {
    let depot;
    let statics;
    let browser;
    let chunkedUrl;
    const bytes = deterministicBytes(`${lib}-5MiB`, SIZE);
    const digest = sha256(bytes);
    const name = `${lib}-random-5m.bin`;
    let first; // the file record of the first upload
    let statsAfterFirst;

    const upload = (fileName, options = {}, expectFailure = false) =>
      uploadInPage({
        context: browser.context,
        pageUrl: statics.url,
        chunkedUrl,
        lib,
        file: { name: fileName, mimeType: 'application/octet-stream', buffer: bytes },
        options: { chunkSize: PIECE, simultaneousUploads: 3, headers: depot.auth, ...options },
        expectFailure,
      });

    before(async () => {
      depot = await startDepot();
      statics = await startStaticServer();
      browser = await launchBrowser();
      chunkedUrl = depot.url + CHUNKED;
      assert.notEqual(new URL(statics.url).origin, new URL(depot.url).origin, 'page and depot share an origin');
    });

    after(async () => {
      // Each step runs even when an earlier one threw.
      const errors = [];
      let depotExit;
      for (const step of [
        () => browser?.close(),
        () => statics?.close(),
        async () => {
          depotExit = await depot?.stop();
        },
      ]) {
        try {
          await step();
        } catch (e) {
          errors.push(e);
        }
      }
      if (depotExit && (depotExit.code !== 0 || depotExit.signal)) {
        errors.push(new Error(`depot did not exit cleanly on SIGTERM: ${JSON.stringify(depotExit)}`));
      }
      const log = depot?.stderr().split('\n').filter((l) => l.trim() && !l.includes('depot listening on'));
      if (log?.length) console.log(`depot stderr (${lib}):\n${log.join('\n')}`);
      if (errors.length) throw errors[0];
    });

    it('uploads 5 MiB in 1 MiB pieces (preflighted, cross-origin) and depot stores it byte for byte', async () => {
      const stats0 = await getJson(depot.url, '/api/stats', depot.adminAuth);
      // A non-simple header makes every request cross-origin *with* a
      // preflight (Authorization, in token mode, does too).
      const run = await upload(name, { headers: { ...depot.auth, 'X-Requested-With': 'XMLHttpRequest' } });
      assert.equal(run.result.pieces, PIECES, 'pieces the library cut');
      assert.deepEqual(run.failures, [], 'failed requests');

      const gets = byMethod(run.exchanges, 'GET');
      const posts = byMethod(run.exchanges, 'POST');
      assert.equal(run.exchanges.length, gets.length + posts.length, 'only GET and POST requests');
      assert.equal(gets.length, PIECES, 'test GETs');
      assert.deepEqual(gets.map((x) => x.status), Array(PIECES).fill(204), 'a new upload: every test answers 204');
      assertEachPieceTestedOnce(gets, prefix);
      assert.equal(posts.length, PIECES, 'POSTs: each piece sent exactly once');
      if (lib === 'flow') {
        // flow.js puts the parameters only in the multipart body.
        for (const p of posts) assert.equal(new URL(p.url).search, '', 'flow.js POST URL carries no query');
      } else {
        const numbers = numeric(posts.map((p) => Number(param(p.url, 'resumableChunkNumber'))));
        assert.deepEqual(numbers, upTo(PIECES), 'piece numbers of the POSTs');
      }

      // Preflights: Chromium caches a preflight per URL, and resumable.js
      // POSTs to the very URL its test GET used, so the rule is: every URL
      // that was requested was preflighted first (in this fresh profile).
      const preflighted = new Set(run.preflights.map((p) => p.url));
      for (const x of run.exchanges) assert.ok(preflighted.has(x.url), `no preflight for ${x.method} ${x.url}`);
      for (const p of run.preflights) assert.ok(['GET', 'POST'].includes(p.requestMethod), `preflight for ${p.requestMethod}`);

      // Four pieces answered partial, one completed the file with 201.
      const bodies = posts.map(json);
      const partial = posts.filter((p) => p.status === 200).map(json);
      const created = posts.filter((p) => p.status === 201).map(json);
      assert.deepEqual(numeric(posts.map((p) => p.status)), [...Array(PIECES - 1).fill(200), 201], 'POST statuses');
      assert.ok(partial.every((b) => b.status === 'partial' && b.total === PIECES), 'partial answers');
      assert.deepEqual(numeric(partial.map((b) => b.received)), upTo(PIECES - 1), 'received counts of the partial answers');
      assert.equal(new Set(bodies.map((b) => b.upload_id)).size, 1, 'one upload session');
      const done = created[0];
      assert.equal(done.status, 'complete');
      assert.ok(done.file && typeof done.file.id === 'string' && done.file.id.length > 0, 'the file record in the 201');
      assert.equal(done.file.name, name);
      assert.equal(done.file.size, SIZE);
      assert.equal(done.file.chunks, PIECES, 'one chunk per piece');
      assert.equal(done.file.url, `/api/files/${done.file.id}`);
      first = done.file;

      // The library saw one of the server's answers as its success message.
      const message = JSON.parse(run.result.message);
      assert.equal(message.upload_id, done.upload_id, 'fileSuccess message is a depot piece answer');
      if (message.file) assert.equal(message.file.id, first.id);

      // The file is listed and its bytes are exactly the ones picked.
      const list = await getJson(depot.url, '/api/files', depot.auth);
      const listed = list.files.find((f) => f.id === first.id);
      assert.ok(listed, 'the file is in GET /api/files');
      assert.equal(listed.size, SIZE);
      const got = await getBytes(depot.url, first.url, depot.auth);
      assert.equal(got.status, 200);
      assert.equal(got.body.length, SIZE, 'downloaded length');
      assert.equal(sha256(got.body), digest, 'downloaded bytes (sha256)');
      // A range across the boundary of pieces 1 and 2.
      const range = await getBytes(depot.url, first.url, { ...depot.auth, Range: `bytes=${PIECE - 10}-${PIECE + 9}` });
      assert.equal(range.status, 206);
      assert.deepEqual(range.body, bytes.subarray(PIECE - 10, PIECE + 10), 'ranged bytes');

      const stats1 = await getJson(depot.url, '/api/stats', depot.adminAuth);
      assert.equal(stats1.files - stats0.files, 1, 'stats.files');
      assert.equal(stats1.logical_bytes - stats0.logical_bytes, SIZE, 'stats.logical_bytes');
      assert.equal(stats1.unique_chunks - stats0.unique_chunks, PIECES, 'stats.unique_chunks');
      assert.equal(stats1.unique_bytes - stats0.unique_bytes, SIZE, 'stats.unique_bytes');
      statsAfterFirst = stats1;
    });

    it('uploading the same file again sends no piece: every test GET answers 200', async () => {
      assert.ok(first, 'the first upload did not complete');
      // No extra header: simple cross-origin requests, no preflight needed
      // (except for the Authorization header, in token mode).
      const run = await upload(name);
      assert.equal(run.result.pieces, PIECES);
      const gets = byMethod(run.exchanges, 'GET');
      assert.equal(byMethod(run.exchanges, 'POST').length, 0, 'POSTs on the second upload');
      assert.equal(gets.length, run.exchanges.length, 'only test GETs');
      assert.equal(gets.length, PIECES, 'test GETs');
      assert.deepEqual(gets.map((x) => x.status), Array(PIECES).fill(200), 'every test answers 200');
      assertEachPieceTestedOnce(gets, prefix);
      for (const g of gets) {
        const b = json(g);
        assert.equal(b.status, 'complete', 'a test of a finished upload');
        assert.equal(b.file?.id, first.id, 'the test answer names the existing file');
      }
      assert.equal(JSON.parse(run.result.message).file?.id, first.id, 'fileSuccess message');

      const list = await getJson(depot.url, '/api/files', depot.auth);
      assert.deepEqual(list.files.map((f) => f.id), [first.id], 'still exactly one file');
      assertSameStats(await getJson(depot.url, '/api/stats', depot.adminAuth), statsAfterFirst, 'after the second upload');
    });

    it('the same bytes under another name are recognised by BLAKE3 piece hashes: no piece sent', async () => {
      assert.ok(first, 'the first upload did not complete');
      const otherName = `copy-of-${name}`;
      const run = await upload(otherName, { hashPieces: true });
      assert.notEqual(run.result.identifier, `${SIZE}-${name.replace(/[^0-9a-zA-Z_-]/g, '')}`, 'a new identifier');
      const gets = byMethod(run.exchanges, 'GET');
      assert.equal(byMethod(run.exchanges, 'POST').length, 0, 'POSTs for a renamed copy');
      assert.equal(gets.length, PIECES, 'test GETs');
      assertEachPieceTestedOnce(gets, prefix);

      // Each test carried the BLAKE3 of exactly its piece.
      for (const g of gets) {
        const n = Number(param(g.url, `${prefix}ChunkNumber`));
        const want = await blake3(bytes.subarray((n - 1) * PIECE, n * PIECE));
        assert.equal(param(g.url, `${prefix}ChunkHash`), want, `${prefix}ChunkHash of piece ${n}`);
      }
      assert.deepEqual(gets.map((x) => x.status), Array(PIECES).fill(200), 'every test answers 200 by hash');
      const bodies = gets.map(json);
      const complete = bodies.filter((b) => b.status === 'complete');
      const partial = bodies.filter((b) => b.status === 'partial');
      assert.equal(complete.length, 1, 'exactly one test completed the file');
      assert.deepEqual(numeric(partial.map((b) => b.received)), upTo(PIECES - 1), 'received counts of the partial answers');
      const copy = complete[0].file;
      assert.ok(copy?.id, 'the completing test answer carries the file');
      assert.notEqual(copy.id, first.id, 'a new file');
      assert.equal(copy.name, otherName);
      assert.equal(copy.size, SIZE);

      const got = await getBytes(depot.url, copy.url, depot.auth);
      assert.equal(got.status, 200);
      assert.equal(sha256(got.body), digest, 'downloaded bytes of the copy (sha256)');

      const stats = await getJson(depot.url, '/api/stats', depot.adminAuth);
      assert.equal(stats.files, statsAfterFirst.files + 1, 'stats.files');
      assert.equal(stats.logical_bytes, statsAfterFirst.logical_bytes + SIZE, 'stats.logical_bytes');
      assert.equal(stats.unique_chunks, statsAfterFirst.unique_chunks, 'stats.unique_chunks: nothing new stored');
      assert.equal(stats.unique_bytes, statsAfterFirst.unique_bytes, 'stats.unique_bytes');
    });

    it('without the token every request answers 401 and the library gives up at once', async (t) => {
      if (!depot.token) {
        t.skip('DEPOT_TEST_AUTH=local: the server takes no tokens');
        return;
      }
      const files0 = (await getJson(depot.url, '/api/files', depot.auth)).files;
      const stats0 = await getJson(depot.url, '/api/stats', depot.adminAuth);
      const run = await upload(`no-token-${name}`, { headers: {} }, true);
      assert.match(run.error, /fileError/, 'the library reported the file failed');
      const statuses = run.exchanges.map((x) => x.status).filter((s) => s !== undefined);
      assert.ok(statuses.length > 0, 'requests were answered');
      assert.deepEqual(statuses, Array(statuses.length).fill(401), 'every answer is 401');
      // No retries: at most one test and one POST per piece.
      assert.ok(run.exchanges.length <= 2 * PIECES, `${run.exchanges.length} requests for ${PIECES} pieces`);
      assert.deepEqual((await getJson(depot.url, '/api/files', depot.auth)).files, files0, 'no new file');
      assertSameStats(await getJson(depot.url, '/api/stats', depot.adminAuth), stats0, 'after the refused upload');
    });
  });
}
