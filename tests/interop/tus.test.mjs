// tus-js-client (npm, its Node.js build) against depot's tus 1.0.0 endpoint
// at /api/tus/. One depot with a fresh data directory for the whole file;
// each test uploads its own deterministic pseudo-random bytes and checks the
// download byte for byte (sha256):
//   - 50 MiB in 5 MiB PATCHes (Depot-File-Id on the last PATCH and on HEAD);
//   - the same size aborted past 40% and resumed from the URL that
//     tus-js-client's Node URL storage kept, with 5 MiB PATCHes and with one
//     unlimited PATCH: the resumed upload starts at the server's offset, so
//     at most the interrupted PATCH is sent twice;
//   - parallelUploads: 3 (three partial uploads concatenated by a final one);
//   - the same bytes uploaded again (other PATCH sizes, creation-with-upload)
//     store no new chunk;
//   - uploadLengthDeferred with a stream (the length comes with the last PATCH);
//   - abort(true): the upload is terminated (DELETE) and gone;
//   - (token mode) without a valid token the creating POST answers 401 and
//     is not retried; an upload cannot be read or ended without the token.
// Every upload sends the token with tus-js-client's `headers` option.
// Upload throughput is reported as a diagnostic, not asserted.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, removeTempDir } from './lib/cleanup.mjs';
import { deterministicBytes, sha256 } from './lib/data.mjs';
import { getBytes, getJson, startDepot } from './lib/depot.mjs';
import { withTimeout } from './lib/drive.mjs';
import {
  TUS_JS_CLIENT_VERSION,
  StallingHttpStack,
  TUS_PATH,
  describeExchanges,
  mbPerSecond,
  startTusUpload,
  stopPast,
  tus,
  tusRequest,
  tusUpload,
} from './lib/tus-node.mjs';

const MiB = 1024 * 1024;
const SIZE = 50 * MiB;
const CHUNK = 5 * MiB;
const TYPE = 'application/octet-stream';
const UPLOAD_TIMEOUT = 60_000;

const only = (exchanges, method) => exchanges.filter((x) => x.method === method);
const num = (v) => (v === undefined ? undefined : Number(v));

function assertSameStats(now, before, keys, what) {
  for (const k of keys) assert.equal(now[k], before[k], `${what}: stats.${k}`);
}

describe(`tus-js-client ${TUS_JS_CLIENT_VERSION} (Node.js) against depot's tus endpoint`, { timeout: 120_000 }, () => {
  let depot;
  let endpoint;

  before(async () => {
    depot = await startDepot();
    endpoint = depot.url + TUS_PATH;
  });

  after(async () => {
    const exit = await depot?.stop();
    const log = depot?.stderr().split('\n').filter((l) => l.trim() && !l.includes('depot listening on'));
    if (log?.length) console.log(`depot stderr (tus):\n${log.join('\n')}`);
    if (exit && (exit.code !== 0 || exit.signal)) {
      throw new Error(`depot did not exit cleanly on SIGTERM: ${JSON.stringify(exit)}`);
    }
  });

  // Every upload sends the token with tus-js-client's `headers` option.
  const upload = (bytes, options) =>
    withTimeout(tusUpload(bytes, { endpoint, headers: depot.auth, ...options }), UPLOAD_TIMEOUT, 'the tus upload');

  /** The file's listing, and its download compared with `bytes`. */
  async function assertStored(fileId, bytes, name) {
    const list = await getJson(depot.url, '/api/files', depot.auth);
    const listed = list.files.find((f) => f.id === fileId);
    assert.ok(listed, `file ${fileId} is in GET /api/files`);
    assert.equal(listed.name, name, 'file name from the filename metadata');
    assert.equal(listed.size, bytes.length, 'listed size');
    assert.equal(listed.content_type, TYPE, 'content type from the filetype metadata');
    const got = await getBytes(depot.url, `/api/files/${fileId}`, depot.auth);
    assert.equal(got.status, 200, 'download status');
    assert.equal(got.body.length, bytes.length, 'downloaded length');
    assert.equal(sha256(got.body), sha256(bytes), 'downloaded bytes (sha256)');
    return listed;
  }

  /** The Depot-File-Id of the last answer of a finished upload. */
  function fileIdOf(lastResponse, exchanges) {
    const id = lastResponse.getHeader('Depot-File-Id');
    assert.ok(id, `the last answer carries Depot-File-Id\n${describeExchanges(exchanges)}`);
    return id;
  }

  /** A created upload's absolute URL under the tus endpoint. */
  function assertUploadUrl(location) {
    assert.ok(location?.startsWith(endpoint), `Location ${location} is an absolute URL under ${endpoint}`);
    assert.match(location.slice(endpoint.length), /^[0-9A-Za-z_-]+$/, 'upload id in Location');
  }

  it('OPTIONS advertises the extensions tus-js-client uses', async () => {
    const res = await tusRequest('OPTIONS', endpoint, depot.auth);
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('tus-version')?.split(',')[0].trim(), '1.0.0');
    const ext = res.headers.get('tus-extension')?.split(',').map((s) => s.trim());
    for (const e of ['creation', 'creation-with-upload', 'creation-defer-length', 'termination', 'concatenation']) {
      assert.ok(ext?.includes(e), `Tus-Extension ${res.headers.get('tus-extension')} lists ${e}`);
    }
  });

  it('without a valid token every request answers 401, and tus-js-client does not retry it', async (t) => {
    if (!depot.token) {
      t.skip('DEPOT_TEST_AUTH=local: the server takes no tokens');
      return;
    }
    const bytes = deterministicBytes('tus-no-token', MiB);
    const metadata = { filename: 'tus-no-token.bin', filetype: TYPE };
    // Retries allowed: a 4xx other than 409 and 423 must still end the upload.
    for (const [what, headers] of [
      ['no token', {}],
      ['a token the server never made', { Authorization: 'Bearer dpt_01JDX3E5C9R2T7VQ4M8N6P0WAB_bm90LWEtc2VjcmV0LWF0LWFsbC1ub3QtYS1zZWNyZXQtYXQtYWxs' }],
    ]) {
      const run = startTusUpload(bytes, { endpoint, headers, chunkSize: MiB, metadata, retryDelays: [0, 50, 100] });
      run.upload.start();
      const err = await withTimeout(
        run.done.then(
          () => assert.fail(`uploaded with ${what}`),
          (e) => e,
        ),
        10_000,
        `the upload with ${what} to fail`,
      );
      const trace = `\n${describeExchanges(run.exchanges)}`;
      assert.deepEqual(run.exchanges.map((x) => `${x.method} ${x.status}`), ['POST 401'], `${what}: one POST, answered 401${trace}`);
      assert.match(err.message, /401/, `${what}: the error names the status`);
    }
    // An upload made with the token cannot be read or continued without it.
    const made = startTusUpload(bytes, { endpoint, headers: depot.auth, chunkSize: MiB / 2, metadata });
    made.upload.start();
    await withTimeout(made.done, UPLOAD_TIMEOUT, 'the upload with the token');
    const url = made.exchanges[0].response.location;
    assertUploadUrl(url);
    assert.equal((await tusRequest('HEAD', url)).status, 401, 'HEAD without the token');
    assert.equal((await tusRequest('DELETE', url)).status, 401, 'DELETE without the token');
    assert.equal((await tusRequest('HEAD', url, depot.auth)).status, 200, 'HEAD with the token');
  });

  it('uploads 50 MiB in 5 MiB PATCHes; the download is byte-identical', async (t) => {
    const bytes = deterministicBytes('tus-50MiB', SIZE);
    const name = 'tus-50m.bin';
    const { lastResponse, exchanges, elapsedMs } = await upload(bytes, {
      chunkSize: CHUNK,
      metadata: { filename: name, filetype: TYPE },
    });
    const trace = `\n${describeExchanges(exchanges)}`;

    // One POST (creation), then ten PATCHes at consecutive offsets.
    assert.deepEqual(exchanges.map((x) => x.method), ['POST', ...Array(SIZE / CHUNK).fill('PATCH')], `requests${trace}`);
    const [post, ...patches] = exchanges;
    assert.equal(post.status, 201, `POST status${trace}`);
    assert.equal(num(post.request['upload-length']), SIZE, 'Upload-Length sent');
    assert.equal(post.response['tus-resumable'], '1.0.0');
    assertUploadUrl(post.response.location);
    patches.forEach((p, i) => {
      assert.equal(p.url, post.response.location, 'PATCH to the created upload');
      assert.equal(num(p.request['upload-offset']), i * CHUNK, `Upload-Offset of PATCH ${i + 1}`);
      assert.equal(p.request['content-type'], 'application/offset+octet-stream');
      assert.equal(p.status, 204, `PATCH ${i + 1} status${trace}`);
      assert.equal(num(p.response['upload-offset']), (i + 1) * CHUNK, `answered Upload-Offset of PATCH ${i + 1}`);
    });
    // Only the completing PATCH names the file.
    assert.deepEqual(
      patches.map((p) => Boolean(p.response['depot-file-id'])),
      [...Array(patches.length - 1).fill(false), true],
      `Depot-File-Id only on the last PATCH${trace}`,
    );
    const fileId = fileIdOf(lastResponse, exchanges);
    assert.equal(patches.at(-1).response['depot-file-id'], fileId);

    // HEAD afterwards: complete, and still naming the file.
    const head = await tusRequest('HEAD', post.response.location, depot.auth);
    assert.equal(head.status, 200, 'HEAD after completion');
    assert.equal(num(head.headers.get('upload-offset')), SIZE, 'HEAD Upload-Offset');
    assert.equal(num(head.headers.get('upload-length')), SIZE, 'HEAD Upload-Length');
    assert.equal(head.headers.get('depot-file-id'), fileId, 'HEAD Depot-File-Id');
    assert.equal(head.headers.get('cache-control'), 'no-store', 'HEAD Cache-Control');

    await assertStored(fileId, bytes, name);
    t.diagnostic(
      `tus-js-client 50 MiB in 5 MiB PATCHes: ${(elapsedMs / 1000).toFixed(2)} s, ${mbPerSecond(SIZE, elapsedMs).toFixed(1)} MB/s`,
    );
  });

  // 5 MiB PATCHes: upload.abort() from onProgress once it passes 40% (which
  // tus-js-client reports early in the fifth PATCH). One unlimited PATCH
  // (tus-js-client's default chunkSize): the PATCH body stalls after 40% +
  // 12345 bytes, then upload.abort(); tus-js-client reports progress only
  // every 100 ms, which a fast server can outrun, so the stall pins the
  // moment down. There the offset is > 0 only if the server keeps the bytes
  // of the interrupted PATCH.
  for (const [label, chunkSize, stallAt] of [
    ['5 MiB PATCHes', CHUNK, undefined],
    ['one unlimited PATCH (the default chunkSize)', Infinity, Math.floor(0.4 * SIZE) + 12345],
  ]) {
    it(`an upload aborted past 40% resumes from the stored URL at the server's offset: ${label}`, async (t) => {
      const bytes = deterministicBytes(`tus-50MiB-resume-${chunkSize}`, SIZE);
      const name = `tus-50m-resumed-${chunkSize}.bin`;
      const dir = makeTempDir('tus-urls');
      try {
        // tus-js-client's Node URL storage, keyed by the Buffer's fingerprint.
        const urlStorage = new tus.FileUrlStorage(join(dir, 'uploads.json'));
        const options = {
          endpoint,
          headers: depot.auth,
          chunkSize,
          metadata: { filename: name, filetype: TYPE },
          urlStorage,
          storeFingerprintForResuming: true,
          removeFingerprintOnSuccess: true,
        };

        // First run: abort past 40%. abortedAt: the bytes handed to the
        // connection by then, at most what the server can have received.
        let abortedAt;
        let abortDone;
        let onAborted;
        const aborted = new Promise((resolve) => {
          onAborted = resolve;
        });
        let first;
        const abortAt = (sent) => {
          abortedAt = sent;
          abortDone = first.upload.abort();
          onAborted();
        };
        first = startTusUpload(bytes, {
          ...options,
          ...(stallAt === undefined
            ? {
                onProgress(sent, total) {
                  if (abortedAt === undefined && sent > 0.4 * total) abortAt(sent);
                },
              }
            : { httpStack: new StallingHttpStack(stallAt, () => abortAt(stallAt)) }),
        });
        first.upload.start();
        await withTimeout(
          Promise.race([aborted, first.done.then(() => assert.fail('the upload finished before it was aborted'))]),
          UPLOAD_TIMEOUT,
          'progress past 40%',
        );
        await abortDone;
        const trace1 = `\n${describeExchanges(first.exchanges)}`;
        const [post, ...patches1] = first.exchanges;
        assert.equal(post.method, 'POST');
        assert.equal(post.status, 201, `POST status${trace1}`);
        const uploadUrl = post.response.location;
        assertUploadUrl(uploadUrl);
        const answered = patches1.filter((p) => p.status !== undefined);
        assert.ok(answered.every((p) => p.method === 'PATCH' && p.status === 204), `answered PATCHes${trace1}`);
        assert.equal(patches1.at(-1).status, undefined, `the interrupted PATCH got no answer${trace1}`);
        const acknowledged = num(answered.at(-1)?.response['upload-offset'] ?? 0);
        // The interrupted PATCH started at the acknowledged offset; what was
        // handed to the connection ends at abortedAt.
        assert.equal(num(patches1.at(-1).request['upload-offset']), acknowledged, 'interrupted PATCH offset');
        assert.ok(abortedAt > acknowledged && abortedAt <= acknowledged + chunkSize, `aborted inside the PATCH at ${acknowledged}`);

        // Second run: a new Upload finds the stored URL and resumes it.
        const second = startTusUpload(bytes, options);
        const previous = await second.upload.findPreviousUploads();
        assert.equal(previous.length, 1, 'one stored upload for this fingerprint');
        assert.equal(previous[0].uploadUrl, uploadUrl, 'the stored URL is the created upload');
        second.upload.resumeFromPreviousUpload(previous[0]);
        second.upload.start();
        const { lastResponse, exchanges, elapsedMs } = await withTimeout(second.done, UPLOAD_TIMEOUT, 'the resumed upload');
        const trace2 = `\n${describeExchanges(exchanges)}`;

        // HEAD first, then PATCHes from the server's offset; no new upload.
        assert.equal(only(exchanges, 'POST').length, 0, `no POST when resuming${trace2}`);
        const [head, ...patches2] = exchanges;
        assert.equal(head.method, 'HEAD', `resume starts with HEAD${trace2}`);
        assert.equal(head.url, uploadUrl);
        assert.equal(head.status, 200, `HEAD status${trace2}`);
        assert.equal(num(head.response['upload-length']), SIZE, 'HEAD Upload-Length');
        const resumedAt = num(head.response['upload-offset']);
        assert.ok(resumedAt > 0, `the server kept the bytes before the abort (offset ${resumedAt})`);
        assert.ok(resumedAt >= acknowledged, `offset ${resumedAt} keeps the acknowledged ${acknowledged} bytes`);
        assert.ok(resumedAt <= abortedAt, `offset ${resumedAt} is no more than was sent (${abortedAt})`);
        assert.ok(patches2.length > 0 && patches2.every((p) => p.method === 'PATCH' && p.status === 204), `PATCHes${trace2}`);
        assert.equal(num(patches2[0].request['upload-offset']), resumedAt, 'the first PATCH after resume starts at the HEAD offset');
        let offset = resumedAt;
        for (const p of patches2) {
          assert.equal(num(p.request['upload-offset']), offset, `PATCH offsets follow each other${trace2}`);
          offset = num(p.response['upload-offset']);
        }
        assert.equal(offset, SIZE, 'the last PATCH completes the upload');

        // Bytes sent twice: those of the interrupted PATCH past the resumed offset.
        const sentTwice = abortedAt - resumedAt;
        const sentInTotal = abortedAt + (SIZE - resumedAt);
        assert.ok(sentTwice >= 0 && sentTwice <= chunkSize && sentTwice < SIZE, `sent twice: ${sentTwice} bytes`);
        assert.ok(sentInTotal < 2 * SIZE, `sent in total: ${sentInTotal} of ${SIZE} bytes`);

        const fileId = fileIdOf(lastResponse, exchanges);
        assert.equal(patches2.at(-1).response['depot-file-id'], fileId);
        await assertStored(fileId, bytes, name);
        assert.deepEqual(await urlStorage.findAllUploads(), [], 'the stored URL is removed on success');
        t.diagnostic(
          `${label}: aborted at ${abortedAt} bytes (acknowledged ${acknowledged}), resumed at ${resumedAt}; ` +
            `sent twice ${sentTwice} bytes (${((100 * sentTwice) / SIZE).toFixed(2)}% of the file); ` +
            `resumed part: ${mbPerSecond(SIZE - resumedAt, elapsedMs).toFixed(1)} MB/s`,
        );
      } finally {
        removeTempDir(dir);
      }
    });
  }

  it('parallelUploads: 3 concatenates three partial uploads into one file', async (t) => {
    const bytes = deterministicBytes('tus-50MiB-parallel', SIZE);
    const name = 'tus-50m-parallel.bin';
    const files0 = (await getJson(depot.url, '/api/files', depot.auth)).files.length;
    const { lastResponse, exchanges, elapsedMs } = await upload(bytes, {
      chunkSize: CHUNK,
      parallelUploads: 3,
      metadata: { filename: name, filetype: TYPE },
    });
    const trace = `\n${describeExchanges(exchanges)}`;

    const posts = only(exchanges, 'POST');
    assert.equal(posts.length, 4, `three partial uploads and a final one${trace}`);
    const partials = posts.filter((p) => p.request['upload-concat'] === 'partial');
    assert.equal(partials.length, 3, `partial POSTs${trace}`);
    for (const p of partials) {
      assert.equal(p.status, 201, `partial POST status${trace}`);
      assertUploadUrl(p.response.location);
    }
    const partUrls = partials.map((p) => p.response.location);
    assert.equal(new Set(partUrls).size, 3, 'three distinct partial uploads');
    const lengths = partials.map((p) => num(p.request['upload-length']));
    assert.equal(lengths.reduce((a, b) => a + b, 0), SIZE, 'the partial lengths add up to the file');

    // Every partial upload's PATCHes complete it.
    for (const [i, url] of partUrls.entries()) {
      const patches = exchanges.filter((x) => x.method === 'PATCH' && x.url === url);
      assert.ok(patches.length > 0 && patches.every((p) => p.status === 204), `PATCHes of part ${i + 1}${trace}`);
      assert.equal(num(patches.at(-1).response['upload-offset']), lengths[i], `part ${i + 1} is complete`);
    }
    assert.equal(exchanges.length, 4 + only(exchanges, 'PATCH').length, `only POST and PATCH requests${trace}`);

    // The final POST comes last and names the parts in order.
    const final = exchanges.at(-1);
    assert.equal(final.method, 'POST');
    const concat = final.request['upload-concat'];
    assert.ok(concat?.startsWith('final;'), `final Upload-Concat: ${concat}`);
    const named = concat.slice('final;'.length).trim().split(/\s+/);
    // (Their order is checked by the download: the bytes must come out right.)
    assert.deepEqual([...named].sort(), [...partUrls].sort(), 'the final upload names the three partial uploads');
    assert.equal(final.status, 201, `final POST status${trace}`);
    assertUploadUrl(final.response.location);
    const fileId = fileIdOf(lastResponse, exchanges);
    assert.equal(final.response['depot-file-id'], fileId, 'the final POST answer names the file');

    // The final upload is complete and names its parts.
    const head = await tusRequest('HEAD', final.response.location, depot.auth);
    assert.equal(head.status, 200, 'HEAD of the final upload');
    assert.equal(num(head.headers.get('upload-offset')), SIZE, 'final Upload-Offset');
    assert.equal(num(head.headers.get('upload-length')), SIZE, 'final Upload-Length');
    assert.equal(head.headers.get('depot-file-id'), fileId);
    assert.equal(head.headers.get('upload-concat'), concat, 'HEAD Upload-Concat of the final upload');

    await assertStored(fileId, bytes, name);
    const files = (await getJson(depot.url, '/api/files', depot.auth)).files;
    assert.equal(files.length, files0 + 1, 'one new file: the partial uploads are not files');
    t.diagnostic(`parallelUploads: 3, 50 MiB: ${(elapsedMs / 1000).toFixed(2)} s, ${mbPerSecond(SIZE, elapsedMs).toFixed(1)} MB/s`);
  });

  it('uploading the same bytes again stores no new chunk (other PATCH sizes, creation-with-upload)', async () => {
    const size = 20 * MiB + 4321;
    const bytes = deterministicBytes('tus-dedup', size);
    const s0 = await getJson(depot.url, '/api/stats', depot.adminAuth);

    const a = await upload(bytes, { chunkSize: CHUNK, metadata: { filename: 'tus-dedup-a.bin', filetype: TYPE } });
    const idA = fileIdOf(a.lastResponse, a.exchanges);
    const fileA = await assertStored(idA, bytes, 'tus-dedup-a.bin');
    const s1 = await getJson(depot.url, '/api/stats', depot.adminAuth);
    assert.equal(s1.files, s0.files + 1, 'first copy: stats.files');
    assert.equal(s1.logical_bytes, s0.logical_bytes + size, 'first copy: stats.logical_bytes');
    assert.ok(s1.unique_chunks > s0.unique_chunks, 'first copy: new unique chunks');
    assert.equal(s1.unique_bytes, s0.unique_bytes + size, 'first copy: stats.unique_bytes (new random bytes)');

    // Different PATCH boundaries, and the first 3 MiB in the creating POST.
    const b = await upload(bytes, {
      chunkSize: 3 * MiB,
      uploadDataDuringCreation: true,
      metadata: { filename: 'tus-dedup-b.bin', filetype: TYPE },
    });
    const trace = `\n${describeExchanges(b.exchanges)}`;
    const post = b.exchanges[0];
    assert.equal(post.method, 'POST');
    assert.equal(post.request['content-type'], 'application/offset+octet-stream', 'creation-with-upload body');
    assert.equal(post.status, 201, `POST status${trace}`);
    assert.equal(num(post.response['upload-offset']), 3 * MiB, `the POST stored its body${trace}`);
    assert.equal(num(only(b.exchanges, 'PATCH')[0]?.request['upload-offset']), 3 * MiB, 'PATCHes continue after the POST body');
    const idB = fileIdOf(b.lastResponse, b.exchanges);
    assert.notEqual(idB, idA, 'a new file');
    const fileB = await assertStored(idB, bytes, 'tus-dedup-b.bin');
    assert.equal(fileB.chunks, fileA.chunks, 'same chunk count: chunk boundaries do not follow PATCH boundaries');
    if (fileA.content_hash !== undefined) assert.equal(fileB.content_hash, fileA.content_hash, 'content_hash');

    const s2 = await getJson(depot.url, '/api/stats', depot.adminAuth);
    assert.equal(s2.files, s1.files + 1, 'second copy: stats.files');
    assert.equal(s2.logical_bytes, s1.logical_bytes + size, 'second copy: stats.logical_bytes');
    assertSameStats(s2, s1, ['unique_chunks', 'unique_bytes', 'stored_bytes'], 'second copy stores nothing new');
  });

  for (const [label, size] of [
    ['a stream of 10 MiB + 12345 bytes', 10 * MiB + 12345],
    ['a stream of exactly 8 MiB', 8 * MiB],
  ]) {
    it(`uploadLengthDeferred: ${label}, chunkSize 4 MiB`, async () => {
      const bytes = deterministicBytes(`tus-deferred-${size}`, size);
      const name = `tus-deferred-${size}.bin`;
      // A plain Readable (not a file): its size is unknown to tus-js-client,
      // which sends what the stream has buffered, up to chunkSize, per PATCH.
      const stream = Readable.from(
        (function* pieces() {
          for (let i = 0; i < size; i += MiB) yield bytes.subarray(i, Math.min(i + MiB, size));
        })(),
      );
      const { lastResponse, exchanges } = await upload(stream, {
        chunkSize: 4 * MiB,
        uploadLengthDeferred: true,
        metadata: { filename: name, filetype: TYPE },
      });
      const trace = `\n${describeExchanges(exchanges)}`;
      const [post, ...patches] = exchanges;
      assert.equal(post.method, 'POST');
      assert.equal(post.request['upload-defer-length'], '1', 'Upload-Defer-Length sent');
      assert.equal(post.request['upload-length'], undefined, 'no Upload-Length at creation');
      assert.equal(post.status, 201, `POST status${trace}`);
      assert.ok(patches.every((p) => p.method === 'PATCH' && p.status === 204), `PATCHes${trace}`);
      // Only the last PATCH declares the length.
      assert.deepEqual(
        patches.map((p) => num(p.request['upload-length'])),
        [...Array(patches.length - 1).fill(undefined), size],
        `Upload-Length on the last PATCH only${trace}`,
      );
      assert.equal(num(patches.at(-1).response['upload-offset']), size);
      const fileId = fileIdOf(lastResponse, exchanges);
      await assertStored(fileId, bytes, name);
    });
  }

  it('abort(true) terminates the upload: DELETE answers 204 and the upload is gone', async () => {
    const size = 8 * MiB;
    const bytes = deterministicBytes('tus-terminate', size);
    const files0 = (await getJson(depot.url, '/api/files', depot.auth)).files.length;
    const options = {
      endpoint,
      headers: depot.auth,
      chunkSize: MiB,
      metadata: { filename: 'tus-terminated.bin', filetype: TYPE },
    };
    const terminate = (up) => up.abort(true);
    const { run, stopped: terminated } = await stopPast(bytes, options, 0.5, terminate, UPLOAD_TIMEOUT);
    await withTimeout(terminated, 10_000, 'the termination');
    const trace = `\n${describeExchanges(run.exchanges)}`;
    const url = run.exchanges[0].response.location;
    assertUploadUrl(url);
    const deletes = only(run.exchanges, 'DELETE');
    assert.equal(deletes.length, 1, `one DELETE${trace}`);
    assert.equal(deletes[0].url, url);
    assert.equal(deletes[0].status, 204, `DELETE status${trace}`);

    const head = await tusRequest('HEAD', url, depot.auth);
    assert.equal(head.status, 404, 'HEAD of a terminated upload');
    const res = await fetch(url, {
      method: 'PATCH',
      headers: { ...depot.auth, 'Tus-Resumable': '1.0.0', 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
      body: Buffer.from('x'),
    });
    await res.arrayBuffer();
    assert.equal(res.status, 404, 'PATCH to a terminated upload');
    assert.equal((await getJson(depot.url, '/api/files', depot.auth)).files.length, files0, 'no file from a terminated upload');
  });
});
