// Uppy (@uppy/core + @uppy/tus, bundled with esbuild) in headless Chromium
// against depot's tus endpoint, from another origin: every request is a CORS
// request, and the page must be able to read Location, Upload-Offset,
// Upload-Length and Depot-File-Id. Two uploads of 20 MiB: one in 5 MiB
// PATCHes straight through, one in a single PATCH (Uppy's default) paused
// past 50% and resumed (HEAD, then a PATCH from the server's offset). Each
// download is compared byte for byte. A third 20 MiB upload speaks the IETF
// resumable-upload draft (tus-js-client's `protocol: 'ietf-draft-05'`,
// passed through Uppy): its request headers must pass the preflights and the
// page must read the draft's answer headers. The token goes in the Tus
// plugin's `headers`; in token mode an upload without it must fail with 401.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';
import { launchBrowser } from './lib/browser.mjs';
import { deterministicBytes, sha256 } from './lib/data.mjs';
import { getBytes, getJson, startDepot } from './lib/depot.mjs';
import { withTimeout } from './lib/drive.mjs';
import { TUS_PATH, tusRequest } from './lib/tus-node.mjs';
import { bundleUppy, startUppyServer, uppyUploadInPage } from './lib/tus-uppy.mjs';

const require = createRequire(import.meta.url);
const UPPY_VERSION = require('@uppy/core/package.json').version;
const UPPY_TUS_VERSION = require('@uppy/tus/package.json').version;
const MiB = 1024 * 1024;
const SIZE = 20 * MiB;
const CHUNK = 5 * MiB;
const TYPE = 'application/octet-stream';

const describeExchanges = (xs) =>
  xs.map((x) => `  ${x.method} ${x.url} offset=${x.offset} -> ${x.status} offset=${x.responseOffset} file=${x.fileId}`).join('\n');

/**
 * Asserts that the page's run uploaded its one file, starting with a POST
 * answered 201; returns the exchanges' trace, the POST and the rest.
 */
function oneUploadCreated(run) {
  const trace = `\n${describeExchanges(run.exchanges)}`;
  assert.deepEqual(run.result.failed, [], `failed uploads${trace}`);
  assert.equal(run.result.successful.length, 1);
  const [post, ...patches] = run.exchanges;
  assert.equal(post.method, 'POST');
  assert.equal(post.status, 201, `POST${trace}`);
  return { trace, post, patches };
}

describe(`Uppy ${UPPY_VERSION} with @uppy/tus ${UPPY_TUS_VERSION} in Chromium against depot's tus endpoint`, { timeout: 120_000 }, () => {
  let depot;
  let pages;
  let browser;
  const data = new Map([
    ['uppy-20m.bin', deterministicBytes('uppy-20MiB', SIZE)],
    ['uppy-20m-paused.bin', deterministicBytes('uppy-20MiB-paused', SIZE)],
    ['uppy-20m-ietf.bin', deterministicBytes('uppy-20MiB-ietf', SIZE)],
  ]);

  before(async () => {
    depot = await startDepot();
    pages = await startUppyServer(await bundleUppy(), data);
    browser = await launchBrowser();
  });

  after(async () => {
    const errors = [];
    let exit;
    for (const step of [() => browser?.close(), () => pages?.close(), async () => (exit = await depot?.stop())]) {
      try {
        await step();
      } catch (e) {
        errors.push(e);
      }
    }
    const log = depot?.stderr().split('\n').filter((l) => l.trim() && !l.includes('depot listening on'));
    if (log?.length) console.log(`depot stderr (uppy):\n${log.join('\n')}`);
    if (exit && (exit.code !== 0 || exit.signal)) errors.push(new Error(`depot did not exit cleanly: ${JSON.stringify(exit)}`));
    if (errors.length) throw errors[0];
  });

  // Uppy's Tus plugin passes `headers` to tus-js-client: the token goes on
  // every request.
  async function uploadInPage(name, { chunkSize = CHUNK, pauseAt, headers = depot.auth, protocol } = {}) {
    const page = await browser.context.newPage();
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    try {
      await page.goto(`${pages.url}/`);
      assert.notEqual(new URL(pages.url).origin, new URL(depot.url).origin, 'page and depot share an origin');
      const run = await withTimeout(
        page.evaluate(uppyUploadInPage, {
          endpoint: depot.url + TUS_PATH,
          name,
          type: TYPE,
          tus: { chunkSize, headers, ...(protocol ? { protocol } : {}) },
          pauseAt,
        }),
        60_000,
        `Uppy to upload ${name}`,
      );
      assert.deepEqual(pageErrors, [], 'page errors');
      return run;
    } finally {
      await page.close();
    }
  }

  async function assertStored(fileId, name) {
    const bytes = data.get(name);
    const listed = (await getJson(depot.url, '/api/files', depot.auth)).files.find((f) => f.id === fileId);
    assert.ok(listed, `file ${fileId} is listed`);
    assert.equal(listed.name, name, 'name from Uppy\'s filename metadata');
    assert.equal(listed.size, SIZE);
    const got = await getBytes(depot.url, `/api/files/${fileId}`, depot.auth);
    assert.equal(got.status, 200);
    assert.equal(sha256(got.body), sha256(bytes), 'downloaded bytes (sha256)');
  }

  it('without the token the creating POST answers 401 and Uppy reports the upload failed', async (t) => {
    if (!depot.token) {
      t.skip('DEPOT_TEST_AUTH=local: the server takes no tokens');
      return;
    }
    const files0 = (await getJson(depot.url, '/api/files', depot.auth)).files.length;
    const run = await uploadInPage('uppy-20m.bin', { headers: {} });
    const trace = `\n${describeExchanges(run.exchanges)}`;
    assert.equal(run.result.successful.length, 0, `an upload without the token succeeded${trace}`);
    assert.equal(run.result.failed.length, 1);
    assert.match(run.result.failed[0].error, /401/, 'the error names the status');
    assert.deepEqual(run.exchanges.map((x) => `${x.method} ${x.status}`), ['POST 401'], `one POST, answered 401${trace}`);
    assert.equal((await getJson(depot.url, '/api/files', depot.auth)).files.length, files0, 'no new file');
  });

  it('uploads 20 MiB in 5 MiB PATCHes; the page reads Depot-File-Id; the download is byte-identical', async () => {
    const name = 'uppy-20m.bin';
    const run = await uploadInPage(name);
    const { trace, patches } = oneUploadCreated(run);
    assert.equal(patches.length, SIZE / CHUNK, `PATCHes${trace}`);
    patches.forEach((p, i) => {
      assert.equal(p.method, 'PATCH');
      assert.equal(p.status, 204, `PATCH ${i + 1}${trace}`);
      assert.equal(Number(p.offset), i * CHUNK);
      // Upload-Offset is readable cross-origin (tus-js-client needs it).
      assert.equal(Number(p.responseOffset), (i + 1) * CHUNK);
    });
    const uploadURL = run.result.successful[0].uploadURL;
    assert.ok(uploadURL?.startsWith(depot.url + TUS_PATH), `uploadURL ${uploadURL}`);
    assert.ok(run.fileIdHeader, `the page reads Depot-File-Id from the last answer${trace}`);
    assert.equal(patches.at(-1).fileId, run.fileIdHeader);
    const head = await tusRequest('HEAD', uploadURL, depot.auth);
    assert.equal(head.headers.get('depot-file-id'), run.fileIdHeader, 'HEAD names the same file');
    await assertStored(run.fileIdHeader, name);
  });

  it('one unlimited PATCH paused past 50% and resumed: HEAD, then a PATCH from the server\'s offset; byte-identical', async (t) => {
    const name = 'uppy-20m-paused.bin';
    // Uppy's default chunkSize (unlimited): the pause interrupts the one PATCH,
    // and the server keeps what arrived.
    const run = await uploadInPage(name, { chunkSize: Infinity, pauseAt: 0.5 });
    const trace = `\n${describeExchanges(run.exchanges)}`;
    assert.deepEqual(run.result.failed, [], `failed uploads${trace}`);
    assert.deepEqual(run.events, ['paused', 'resumed'], 'pause events');
    assert.ok(run.pausedAt > 0.5 * SIZE, `paused at ${run.pausedAt}`);

    const heads = run.exchanges.filter((x) => x.method === 'HEAD');
    assert.equal(heads.length, 1, `one HEAD on resume${trace}`);
    const h = run.exchanges.indexOf(heads[0]);
    assert.equal(run.exchanges.filter((x) => x.method === 'POST').length, 1, `one POST${trace}`);
    assert.equal(heads[0].status, 200, `HEAD${trace}`);
    // Upload-Offset and Upload-Length are readable cross-origin on HEAD.
    assert.equal(Number(heads[0].responseLength), SIZE, 'HEAD Upload-Length');
    // Not bounded by pausedAt: Chromium's network service sends on while the
    // page handles the progress event that leads to the pause.
    const resumedAt = Number(heads[0].responseOffset);
    assert.ok(resumedAt > 0 && resumedAt <= SIZE, `resumed at ${resumedAt} (paused at ${run.pausedAt})${trace}`);
    const after = run.exchanges.slice(h + 1);
    if (resumedAt < SIZE) {
      assert.ok(after.length > 0 && after.every((x) => x.method === 'PATCH' && x.status === 204), `PATCHes after HEAD${trace}`);
      assert.equal(Number(after[0].offset), resumedAt, 'the first PATCH after resume starts at the HEAD offset');
      assert.equal(Number(after.at(-1).responseOffset), SIZE);
      assert.equal(after.at(-1).fileId, run.fileIdHeader);
    } else {
      // The browser had handed over every byte and depot had stored them all
      // before the pause: the HEAD finds the upload complete and names the file.
      assert.deepEqual(after, [], `nothing after a HEAD that finds the upload complete${trace}`);
      assert.equal(heads[0].fileId, run.fileIdHeader);
    }
    assert.ok(run.fileIdHeader, `Depot-File-Id${trace}`);
    await assertStored(run.fileIdHeader, name);
    t.diagnostic(`Uppy paused at ${run.pausedAt} bytes, resumed at ${resumedAt}`);
  });

  it('in IETF-draft mode (ietf-draft-05) from another origin: the preflights pass, the page reads the draft\'s headers, byte-identical', async () => {
    const name = 'uppy-20m-ietf.bin';
    const run = await uploadInPage(name, { protocol: 'ietf-draft-05' });
    // A request header missing from the CORS allow list fails the
    // preflight, and the upload with it.
    const { trace, post, patches } = oneUploadCreated(run);
    assert.ok(patches.length >= 1 && patches.every((p) => p.method === 'PATCH' && p.status === 204), `PATCHes${trace}`);
    // Each answer's draft headers, as the page reads them: CORS exposes them.
    for (const x of run.exchanges) {
      assert.equal(x.interop, '6', `Upload-Draft-Interop-Version readable on ${x.method}${trace}`);
      assert.ok(x.responseOffset !== null, `Upload-Offset readable on ${x.method}${trace}`);
      assert.match(x.limit ?? '', /max-size=/, `Upload-Limit readable on ${x.method}${trace}`);
    }
    assert.ok(post.location?.startsWith(depot.url + TUS_PATH), `Location readable: ${post.location}`);
    assert.equal(post.complete, '?0');
    assert.equal(patches.at(-1).complete, '?1', `the last append completes the upload${trace}`);
    assert.equal(Number(patches.at(-1).responseOffset), SIZE);
    assert.ok(run.fileIdHeader, `Depot-File-Id${trace}`);
    assert.equal(patches.at(-1).fileId, run.fileIdHeader);
    await assertStored(run.fileIdHeader, name);
  });
});
