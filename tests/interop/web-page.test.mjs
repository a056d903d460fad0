// depot's own web page (GET /, assets embedded in the binary) in headless
// Chromium, driven the way a person uses it: files dropped on Uppy's
// Dashboard, buttons clicked, dialogs confirmed. What the server received is
// counted by the server itself (/metrics: depot_http_request_bytes_total).
//
//   local mode: three files (one of 64 MiB) dropped at once reach 100% and
//     download byte-identical through their signed links, the big one's
//     chunks sent in batches (POST /api/chunks); a reload half-way through a
//     64 MiB upload resumes, sending no more than the remainder plus one
//     batch; a small file (tus) resumes after a reload from the
//     server's offset; the same 64 MiB again sends < 1% and the page says
//     so; 1 MiB inserted in the middle sends < 4 MiB; delete; a share link
//     works, then fails once expired.
//   token mode: without a token the page asks for one; a wrong one is
//     refused; with a read-only token the list works and uploads are refused
//     with a clear message.
//
// UPDATE_SCREENSHOTS=1 writes the screenshots to docs/ (else a temp dir).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { blake3 } from 'hash-wasm';
import { launchBrowser } from './lib/browser.mjs';
import { makeTempDir } from './lib/cleanup.mjs';
import { deterministicBytes } from './lib/data.mjs';
import { getBytes, getJson, startDepot } from './lib/depot.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const MiB = 1024 * 1024;
const BIG = 64 * MiB;
const shots = process.env.UPDATE_SCREENSHOTS ? join(here, '../../docs') : makeTempDir('shots');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, fn, timeoutMs = 60_000, everyMs = 100) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/**
 * Holds each batch of chunks the page sends (POST /api/chunks) for `ms`
 * before it goes out; returns the route handler (for `page.unroute`).
 */
async function slowChunkBatches(page, ms) {
  const slow = async (route) => {
    if (route.request().method() !== 'POST') return route.fallback();
    await sleep(ms);
    return route.continue().catch(() => {});
  };
  await page.route('**/api/chunks', slow);
  return slow;
}

/** Counts the page's chunk uploads from now on: { batches, puts, stop() }. */
function countChunkRequests(page) {
  const n = { batches: 0, puts: 0 };
  const count = (req) => {
    const path = new URL(req.url()).pathname;
    if (req.method() === 'POST' && path === '/api/chunks') n.batches += 1;
    if (req.method() === 'PUT' && path.startsWith('/api/chunks/')) n.puts += 1;
  };
  page.on('request', count);
  n.stop = () => page.off('request', count);
  return n;
}

async function bytesIn(base) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = /^depot_http_request_bytes_total\s+(\d+)/m.exec(text);
  assert.ok(m, 'depot_http_request_bytes_total in /metrics');
  return Number(m[1]);
}

/** A page on depot's web UI, with test files it can fetch from /__test__/NAME. */
async function openPage(browser, url, data) {
  const page = await browser.context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e}`));
  page.on('console', (m) => {
    // Failed requests the test provokes (401/403) are logged by Chromium as errors; CSP violations are not expected.
    if (m.type() === 'error' && /Content.Security.Policy|Refused to/i.test(m.text())) problems.push(m.text());
  });
  await page.route('**/__test__/*', (route) => {
    const name = decodeURIComponent(new URL(route.request().url()).pathname.split('/').pop());
    const body = data.get(name);
    return body
      ? route.fulfill({ status: 200, body, contentType: name.endsWith('.txt') ? 'text/plain' : 'application/octet-stream' })
      : route.fulfill({ status: 404, body: 'no such test file' });
  });
  await page.goto(`${url}/`);
  return { page, problems };
}

/** Drops files on the Dashboard as a drag from the desktop would. */
async function dropFiles(page, names) {
  await page.evaluate(async (names) => {
    const dt = new DataTransfer();
    for (const n of names) {
      const blob = await (await fetch(`/__test__/${encodeURIComponent(n)}`)).blob();
      dt.items.add(new File([blob], n, { type: blob.type, lastModified: 1_700_000_000_000 }));
    }
    const target = document.querySelector('.uppy-Dashboard-inner');
    for (const type of ['dragenter', 'dragover', 'drop']) {
      target.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
    }
  }, names);
}

/** Uppy's view of a file: { percentage, bytesUploaded, complete, error }. */
const uppyFile = (page, name) =>
  page.evaluate((name) => {
    const f = window.depotUppy.getFiles().find((x) => x.name === name);
    return f && { percentage: f.progress.percentage, bytesUploaded: f.progress.bytesUploaded, complete: !!f.progress.uploadComplete, error: f.error || null };
  }, name);

async function uploaded(page, name, timeoutMs = 90_000) {
  return waitFor(
    `${name} to upload`,
    async () => {
      const f = await uppyFile(page, name);
      if (f?.error) throw new Error(`${name}: ${f.error}`);
      return f?.complete && f.percentage === 100 && f;
    },
    timeoutMs,
  );
}

/** The dedup report the page shows for `name`: { sent, total, text }. */
const report = (page, name) =>
  page.evaluate((name) => {
    const li = [...document.querySelectorAll('#reports li')].find((x) => x.dataset.name === name);
    return li && { sent: Number(li.dataset.sent), total: Number(li.dataset.total), text: li.textContent };
  }, name);

const rowOf = (page, name) => page.locator(`#files tbody tr[data-name="${name}"]`);

/** Clicks the row's Download button and returns the saved bytes. */
async function downloadThroughPage(page, name) {
  const [dl] = await Promise.all([page.waitForEvent('download'), rowOf(page, name).getByRole('button', { name: `Download ${name}` }).click()]);
  assert.equal(dl.suggestedFilename(), name);
  assert.match(dl.url(), /[?&]sig=/, 'a signed link, not a token in the URL');
  return readFileSync(await dl.path());
}

describe('the web page in Chromium (local mode)', { timeout: 300_000 }, () => {
  let depot;
  let browser;
  let page;
  let problems;
  const big = deterministicBytes('web-64MiB', BIG);
  const half = BIG / 2;
  const inserted = Buffer.concat([big.subarray(0, half), deterministicBytes('web-insert', MiB), big.subarray(half)]);
  const data = new Map([
    ['notes.txt', Buffer.from('depot web page test\n'.repeat(4096))],
    ['photo.bin', deterministicBytes('web-3MiB', 3 * MiB)],
    ['big.bin', big],
    ['big-again.bin', big],
    ['big-inserted.bin', inserted],
    ['resume.bin', deterministicBytes('web-resume-64MiB', BIG)],
    ['tus-resume.bin', deterministicBytes('web-tus-7MiB', 7 * MiB)],
    ['pause.bin', deterministicBytes('web-pause-24MiB', 24 * MiB)],
    ['cancel.bin', deterministicBytes('web-cancel-24MiB', 24 * MiB)],
  ]);

  before(async () => {
    depot = await startDepot({ auth: 'local' });
    browser = await launchBrowser();
    ({ page, problems } = await openPage(browser, depot.url, data));
    await page.waitForSelector('body[data-ready="true"]');
  });

  after(async () => {
    await browser?.close();
    const exit = await depot?.stop();
    const log = depot?.stderr().split('\n').filter((l) => l.trim() && !l.includes('depot listening on'));
    if (log?.length) console.log(`depot stderr (web page):\n${log.join('\n')}`);
    assert.deepEqual(problems, [], 'page errors and CSP violations');
    assert.ok(!exit || (exit.code === 0 && !exit.signal), `depot exit ${JSON.stringify(exit)}`);
  });

  it('serves the page from the binary with a strict policy; empty store, empty list', async () => {
    const res = await fetch(`${depot.url}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-security-policy'), /script-src 'self' 'wasm-unsafe-eval'/);
    assert.equal(res.headers.get('cache-control'), 'no-cache');
    assert.ok(await page.locator('#files-empty').isVisible(), 'the empty list says so');
    await page.screenshot({ path: join(shots, 'ui-empty.png') });
  });

  it('uploads three files dropped at once (one of 64 MiB, its chunks in batches) to 100%; the list shows them; each download is byte-identical', async (t) => {
    const { max_batch_bytes: batchBytes } = await getJson(depot.url, '/api/chunking');
    const requests = countChunkRequests(page);
    await dropFiles(page, ['notes.txt', 'photo.bin', 'big.bin']);
    for (const name of ['notes.txt', 'photo.bin', 'big.bin']) await uploaded(page, name);
    requests.stop();
    // 64 MiB in batches of at most `batchBytes`, filled across the hashing
    // worker's 8 MiB blocks: not a request per chunk (~200), nor two or
    // three per block (20); the data is fixed, so the count is (17).
    t.diagnostic(`big.bin: ${requests.batches} batches, ${requests.puts} single PUTs (batches of at most ${batchBytes} bytes)`);
    assert.equal(requests.puts, 0, 'no chunk sent alone');
    const fewest = Math.ceil(BIG / batchBytes);
    assert.ok(requests.batches >= fewest && requests.batches <= fewest + 2, `${requests.batches} batches for 64 MiB`);
    await waitFor('the list to show three files', async () => (await page.locator('#files tbody tr').count()) === 3, 10_000);
    for (const name of ['notes.txt', 'photo.bin', 'big.bin']) {
      await rowOf(page, name).waitFor();
      const got = await downloadThroughPage(page, name);
      assert.equal(await blake3(got), await blake3(data.get(name)), `${name} downloaded (BLAKE3)`);
    }
    const r = await report(page, 'big.bin');
    assert.ok(r, 'the 64 MiB file went through the dedup protocol');
    assert.equal(r.total, BIG);
    // Fresh random bytes: deduplication saved nothing, and the list says so.
    assert.equal(await rowOf(page, 'big.bin').getAttribute('data-saved'), '0');
    assert.equal(await rowOf(page, 'big.bin').locator('td').nth(2).textContent(), 'none');
  });

  it('a reload half-way through a 64 MiB upload: dropped again, it resumes and sends at most the remainder plus one batch', async (t) => {
    const { max_batch_bytes: batchBytes } = await getJson(depot.url, '/api/chunking');
    // Slow each batch down so that half-way can be caught.
    const slow = await slowChunkBatches(page, 300);
    const b0 = await bytesIn(depot.url);
    await dropFiles(page, ['resume.bin']);
    await waitFor('half of resume.bin', async () => (await uppyFile(page, 'resume.bin'))?.bytesUploaded >= half, 120_000, 50);
    await page.screenshot({ path: join(shots, 'ui-uploading.png') });
    await page.reload();
    await page.waitForSelector('body[data-ready="true"]');
    await page.unroute('**/api/chunks', slow);
    await sleep(300);
    const b1 = await bytesIn(depot.url);
    await dropFiles(page, ['resume.bin']);
    await uploaded(page, 'resume.bin');
    const b2 = await bytesIn(depot.url);

    const before = b1 - b0;
    const afterReload = b2 - b1;
    // The JSON of the missing queries and the commit ride along: a few KiB per MiB at most.
    const json = 64 * 1024;
    t.diagnostic(`before the reload: ${before} bytes; after: ${afterReload}; remainder + one batch: ${BIG - before + batchBytes}`);
    assert.ok(before >= half * 0.9, `half was sent before the reload (${before})`);
    assert.ok(afterReload <= BIG - before + batchBytes + json, `after the reload ${afterReload} bytes, remainder ${BIG - before}, batch max ${batchBytes}`);
    const r = await report(page, 'resume.bin');
    assert.ok(r.sent < BIG * 0.6, `the page reports ${r.sent} sent: ${r.text}`);
    await rowOf(page, 'resume.bin').waitFor();
    const got = await downloadThroughPage(page, 'resume.bin');
    assert.equal(await blake3(got), await blake3(data.get('resume.bin')), 'resume.bin downloaded (BLAKE3)');
  });

  it('a small file (tus) reloaded half-way: dropped again, it resumes from the server\'s offset (HEAD, no new upload)', async (t) => {
    const name = 'tus-resume.bin';
    const size = data.get(name).length;
    // The first PATCH (4 MiB) goes through; the second is held until the reload drops it.
    let held = null;
    const hold = (route) => {
      const r = route.request();
      if (r.method() === 'PATCH' && Number(r.headers()['upload-offset']) > 0) {
        held = route;
        return undefined;
      }
      return route.fallback();
    };
    await page.route('**/api/tus/**', hold);
    const b0 = await bytesIn(depot.url);
    await dropFiles(page, [name]);
    await waitFor('the second PATCH', async () => held, 30_000);
    const stored = await bytesIn(depot.url) - b0;
    assert.ok(await page.evaluate(() => Object.keys(localStorage).some((k) => k.startsWith('tus::'))), 'tus keeps the upload URL in localStorage');
    await page.reload();
    await page.unroute('**/api/tus/**', hold);
    await held.abort().catch(() => {});
    await page.waitForSelector('body[data-ready="true"]');
    const b1 = await bytesIn(depot.url);
    const seen = [];
    const log = (req) => req.url().includes('/api/tus/') && seen.push(`${req.method()} ${req.headers()['upload-offset'] ?? ''}`.trim());
    page.on('request', log);
    await dropFiles(page, [name]);
    await uploaded(page, name);
    page.off('request', log);
    const b2 = await bytesIn(depot.url);
    t.diagnostic(`tus: ${stored} bytes before the reload, ${b2 - b1} after; requests after: ${seen.join(', ')}`);
    assert.ok(stored >= 4 * MiB, `the first PATCH arrived (${stored})`);
    assert.ok(!seen.some((x) => x.startsWith('POST')), `no new upload after the reload: ${seen}`);
    assert.ok(seen.some((x) => x.startsWith('HEAD')), `a HEAD asks the offset: ${seen}`);
    assert.ok(b2 - b1 <= size - 4 * MiB, `after the reload ${b2 - b1} bytes for a remainder of ${size - 4 * MiB}`);
    await rowOf(page, name).waitFor();
    const got = await downloadThroughPage(page, name);
    assert.equal(await blake3(got), await blake3(data.get(name)), `${name} downloaded (BLAKE3)`);
  });

  it('the same 64 MiB again sends < 1% and the page says so; with 1 MiB inserted in the middle, < 4 MiB', async (t) => {
    const b0 = await bytesIn(depot.url);
    await dropFiles(page, ['big-again.bin']);
    await uploaded(page, 'big-again.bin');
    const b1 = await bytesIn(depot.url);
    const again = await report(page, 'big-again.bin');
    t.diagnostic(`same 64 MiB: ${b1 - b0} bytes received by the server; the page: ${again.text}`);
    assert.ok(b1 - b0 < BIG / 100, `server received ${b1 - b0} bytes`);
    assert.equal(again.sent, 0);
    assert.match(again.text, /did not have to be sent/);
    // The list's dedup saving column: all of it was there already.
    await rowOf(page, 'big-again.bin').waitFor();
    assert.equal(await rowOf(page, 'big-again.bin').getAttribute('data-saved'), String(BIG));
    assert.match(await rowOf(page, 'big-again.bin').locator('td').nth(2).textContent(), /\(100%\)/);

    await dropFiles(page, ['big-inserted.bin']);
    await uploaded(page, 'big-inserted.bin');
    const b2 = await bytesIn(depot.url);
    const ins = await report(page, 'big-inserted.bin');
    t.diagnostic(`1 MiB inserted: ${b2 - b1} bytes received by the server; the page: ${ins.text}`);
    assert.ok(b2 - b1 < 4 * MiB, `server received ${b2 - b1} bytes`);
    await rowOf(page, 'big-inserted.bin').waitFor();
    const saved = Number(await rowOf(page, 'big-inserted.bin').getAttribute('data-saved'));
    t.diagnostic(`1 MiB inserted: the list says ${saved} bytes saved`);
    assert.ok(saved > BIG - 4 * MiB && saved <= BIG, `saving ${saved} of ${BIG + MiB}`);
    const got = await downloadThroughPage(page, 'big-inserted.bin');
    assert.equal(await blake3(got), await blake3(inserted), 'big-inserted.bin downloaded (BLAKE3)');
    await page.screenshot({ path: join(shots, 'ui-list.png'), fullPage: true });
  });

  it('a dedup upload pauses and resumes from the Dashboard, and stops when cancelled', async () => {
    const { max_batch_bytes: batchBytes } = await getJson(depot.url, '/api/chunking');
    const slow = await slowChunkBatches(page, 250);
    // The batch in flight when the button was pressed may still arrive.
    const quiet = async (what) => {
      await sleep(600);
      const a = await bytesIn(depot.url);
      await sleep(1500);
      const b = await bytesIn(depot.url);
      assert.ok(b - a <= batchBytes, `${what}: ${b - a} bytes arrived in 1.5 s`);
    };

    await dropFiles(page, ['pause.bin']);
    await waitFor('a quarter of pause.bin', async () => (await uppyFile(page, 'pause.bin'))?.bytesUploaded >= 6 * MiB, 60_000, 50);
    await page.getByRole('button', { name: 'Pause upload' }).click();
    await quiet('paused');
    const at = (await uppyFile(page, 'pause.bin')).bytesUploaded;
    assert.ok(at < 24 * MiB, `paused at ${at}`);
    await page.getByRole('button', { name: 'Resume upload' }).click();
    await uploaded(page, 'pause.bin');
    await rowOf(page, 'pause.bin').waitFor();
    const id = await rowOf(page, 'pause.bin').getAttribute('data-id');
    const got = await getBytes(depot.url, `/api/files/${id}`);
    assert.equal(await blake3(got.body), await blake3(data.get('pause.bin')), 'pause.bin stored (BLAKE3)');

    await dropFiles(page, ['cancel.bin']);
    await waitFor('some of cancel.bin', async () => (await uppyFile(page, 'cancel.bin'))?.bytesUploaded >= 4 * MiB, 60_000, 50);
    await page.locator('.uppy-StatusBar').getByRole('button', { name: 'Cancel' }).click();
    await quiet('cancelled');
    assert.equal(await uppyFile(page, 'cancel.bin'), undefined, 'gone from the Dashboard');
    await page.unroute('**/api/chunks', slow);
    const names = (await getJson(depot.url, '/api/files')).files.map((f) => f.name);
    assert.ok(!names.includes('cancel.bin'), 'a cancelled upload is not committed');
  });

  it('searches by name', async () => {
    await page.fill('#search', 'big');
    await waitFor('the search to narrow the list', async () => (await page.locator('#files tbody tr').count()) === 3, 5_000);
    await page.fill('#search', '');
    await waitFor('the full list', async () => (await page.locator('#files tbody tr').count()) === 8, 5_000);
  });

  it('pages through a long list with "Show more" (50 a page), within a search', async () => {
    const ids = [];
    for (let i = 0; i < 55; i++) {
      const name = `page-${String(i).padStart(2, '0')}.txt`;
      const r = await fetch(`${depot.url}/api/files/upload?filename=${name}`, { method: 'POST', body: `file ${i}\n` });
      assert.equal(r.status, 201);
      ids.push((await r.json()).id);
    }
    await page.fill('#search', 'page-');
    const rows = () => page.locator('#files tbody tr').count();
    await waitFor('the first page', async () => (await rows()) === 50, 5_000);
    await page.getByRole('button', { name: 'Show more' }).click();
    await waitFor('the second page', async () => (await rows()) === 55, 5_000);
    assert.ok(await page.locator('#more').isHidden(), 'no more pages');
    // Gone again, so that the rest of the suite sees the files it made.
    for (const id of ids) assert.equal((await fetch(`${depot.url}/api/files/${id}`, { method: 'DELETE' })).status, 204);
    await page.fill('#search', '');
    await waitFor('the list without them', async () => (await rows()) === 8, 5_000);
  });

  it('deletes a file after confirmation: gone from the list and the server', async () => {
    const id = await rowOf(page, 'notes.txt').getAttribute('data-id');
    await rowOf(page, 'notes.txt').getByRole('button', { name: 'Delete notes.txt' }).click();
    await page.locator('#delete-dialog').getByRole('button', { name: 'Delete' }).click();
    await rowOf(page, 'notes.txt').waitFor({ state: 'detached' });
    assert.equal((await getBytes(depot.url, `/api/files/${id}`)).status, 404);
  });

  it('a share link downloads while valid and fails once expired', async () => {
    await rowOf(page, 'photo.bin').getByRole('button', { name: 'Share a link to photo.bin' }).click();
    // The dialog offers minutes to days; a 2-second choice keeps the test short.
    await page.evaluate(() => {
      const o = new Option('2 seconds', '2', true, true);
      document.querySelector('#share-expiry').append(o);
    });
    await page.getByRole('button', { name: 'Create link' }).click();
    const url = await waitFor('the share link', async () => page.inputValue('#share-url'), 5_000);
    assert.ok(url.startsWith(`${depot.url}/api/files/`), url);
    const ok = await fetch(url);
    assert.equal(ok.status, 200);
    assert.equal(await blake3(Buffer.from(await ok.arrayBuffer())), await blake3(data.get('photo.bin')));
    await page.locator('#share-dialog').getByRole('button', { name: 'Close' }).click();
    await sleep(3_200);
    const late = await fetch(url);
    assert.ok([401, 403, 410].includes(late.status), `expired link answered ${late.status}`);
  });

  it('fits a phone-width screen in dark mode', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.emulateMedia({ colorScheme: 'dark' });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `page wider than the screen by ${overflow}px`);
    await page.screenshot({ path: join(shots, 'ui-phone-dark.png'), fullPage: true });
  });
});

describe('the web page in Chromium (token mode)', { timeout: 120_000 }, () => {
  let depot;
  let browser;
  let readOnly;
  const data = new Map([
    ['small.txt', Buffer.from('a small text\n'.repeat(100))],
    ['large.bin', deterministicBytes('web-token-9MiB', 9 * MiB)],
  ]);

  before(async () => {
    depot = await startDepot({ env: { DEPOT_AUTH_MODE: 'token' } });
    browser = await launchBrowser();
    const admin = readFileSync(join(depot.dataDir, 'admin.token'), 'utf8').trim();
    const res = await fetch(`${depot.url}/api/admin/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tenant: 'reader', scopes: ['read'], name: 'read only' }),
    });
    assert.equal(res.status, 201, await res.clone().text());
    readOnly = (await res.json()).token;
  });

  after(async () => {
    await browser?.close();
    await depot?.stop();
  });

  it('asks for a token, refuses a wrong one, and with a read-only token refuses uploads clearly', async () => {
    const { page, problems } = await openPage(browser, depot.url, data);
    await page.locator('#sign-in').waitFor();
    assert.ok(await page.locator('#app').isHidden(), 'nothing but sign-in without a token');

    await page.fill('#token', 'dpt_not_a_real_token');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => /not accepted/.test(document.querySelector('#status').textContent));
    assert.ok(await page.locator('#sign-in').isVisible());

    await page.fill('#token', readOnly);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForSelector('body[data-ready="true"]');
    assert.ok(await page.locator('#files-empty').isVisible(), 'a read-only token lists (an empty) store');
    assert.equal(await page.evaluate(() => location.href.includes('dpt_')), false, 'the token never appears in the URL');

    for (const name of ['small.txt', 'large.bin']) {
      await dropFiles(page, [name]);
      await page.waitForFunction(
        (name) => document.querySelector('#status').textContent.startsWith(`${name} was not uploaded`),
        name,
        { timeout: 20_000 },
      );
      const text = await page.textContent('#status');
      assert.match(text, /does not allow this.*`write`/, `${name}: ${text}`);
    }
    assert.deepEqual(problems, []);
    await page.close();
  });
});
