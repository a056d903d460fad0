// tus-js-client (Node) in its IETF-draft modes against depot's /api/tus/:
// `protocol: 'ietf-draft-03'` (Upload-Draft-Interop-Version 5) and
// `'ietf-draft-05'` (6, application/partial-upload). For each: 64 MiB in
// 5 MiB appends, aborted past 40%, resumed from the URL tus-js-client's
// Node URL storage kept (HEAD for the offset, then appends from there),
// and the download compared byte for byte (sha256). The same endpoint
// keeps answering tus 1.0 (tus.test.mjs).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, removeTempDir } from './lib/cleanup.mjs';
import { deterministicBytes, sha256 } from './lib/data.mjs';
import { getBytes, getJson, startDepot } from './lib/depot.mjs';
import { withTimeout } from './lib/drive.mjs';
import { TUS_JS_CLIENT_VERSION, TUS_PATH, describeExchanges, startTusUpload, stopPast, tus } from './lib/tus-node.mjs';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const CHUNK = 5 * MiB;
const UPLOAD_TIMEOUT = 90_000;

describe(`tus-js-client ${TUS_JS_CLIENT_VERSION} (Node.js) in IETF-draft mode against depot`, { timeout: 300_000 }, () => {
  let depot;
  let endpoint;

  before(async () => {
    depot = await startDepot({ auth: 'local' });
    endpoint = depot.url + TUS_PATH;
  });

  after(async () => {
    await depot?.stop();
  });

  for (const [protocol, interop] of [
    ['ietf-draft-03', '5'],
    ['ietf-draft-05', '6'],
  ]) {
    it(`${protocol}: 64 MiB aborted past 40% and resumed downloads byte-identical`, async () => {
      const bytes = deterministicBytes(`tus-ietf-${protocol}`, SIZE);
      const name = `ietf-${protocol}.bin`;
      const dir = makeTempDir('tus-ietf-urls');
      try {
        const options = {
          endpoint,
          protocol,
          chunkSize: CHUNK,
          metadata: { filename: name, filetype: 'application/octet-stream' },
          urlStorage: new tus.FileUrlStorage(join(dir, 'uploads.json')),
          storeFingerprintForResuming: true,
          removeFingerprintOnSuccess: true,
        };
        const abort = (up) => up.abort();
        const { run: first, stopped } = await stopPast(bytes, options, 0.4, abort, UPLOAD_TIMEOUT);
        await stopped;
        const trace1 = `\n${describeExchanges(first.exchanges)}`;
        const [post] = first.exchanges;
        assert.equal(post.method, 'POST');
        assert.equal(post.status, 201, `POST status${trace1}`);
        assert.equal(post.request['upload-draft-interop-version'], interop, 'the interop version sent');
        assert.equal(post.request['tus-resumable'], undefined, 'no Tus-Resumable in the draft modes');
        const uploadUrl = post.response.location;
        assert.ok(uploadUrl?.startsWith(endpoint), `Location ${uploadUrl}`);

        const second = startTusUpload(bytes, options);
        const previous = await second.upload.findPreviousUploads();
        assert.equal(previous.length, 1, 'one stored upload');
        second.upload.resumeFromPreviousUpload(previous[0]);
        second.upload.start();
        const { exchanges } = await withTimeout(second.done, UPLOAD_TIMEOUT, 'the resumed upload');
        const trace2 = `\n${describeExchanges(exchanges)}`;
        const [head, ...patches] = exchanges;
        assert.equal(head.method, 'HEAD', `resume starts with HEAD${trace2}`);
        assert.equal(head.status, 204, `HEAD status${trace2}`);
        const resumedAt = Number(head.response['upload-offset']);
        assert.ok(resumedAt > 0.3 * SIZE, `resumed at ${resumedAt}${trace2}`);
        assert.ok(patches.length > 0 && patches.every((p) => p.method === 'PATCH' && p.status === 204), `PATCHes${trace2}`);
        assert.equal(Number(patches.at(-1).response['upload-offset']), SIZE, 'the last PATCH completes the upload');
        assert.equal(patches.at(-1).request['upload-complete'], '?1');
        assert.equal(patches.at(-1).response['upload-complete'], '?1');
        const fileId = patches.at(-1).response['depot-file-id'];
        assert.ok(fileId, `Depot-File-Id on the last PATCH${trace2}`);

        const info = await getJson(depot.url, `/api/files/${fileId}/info`);
        assert.equal(info.name, name);
        assert.equal(info.size, SIZE);
        const got = await getBytes(depot.url, `/api/files/${fileId}`);
        assert.equal(got.status, 200);
        assert.equal(sha256(got.body), sha256(bytes), 'downloaded bytes (sha256)');
      } finally {
        removeTempDir(dir);
      }
    });
  }
});
