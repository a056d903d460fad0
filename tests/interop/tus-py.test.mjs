// tuspy (the Python tus client, PyPI `tuspy`) against depot's tus endpoint:
// runs tus_py_test.py on 10 MiB of deterministic data (a resumed upload, a
// checksummed one, an asyncio one), then checks each resulting file here:
// listed under its name, downloaded byte for byte, and the resumed upload's
// state by HEAD. Skipped only when there is no Python 3; tuspy itself is
// installed when missing (see lib/tus-python.mjs).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { makeTempDir, removeTempDir } from './lib/cleanup.mjs';
import { deterministicBytes, sha256 } from './lib/data.mjs';
import { getBytes, getJson, startDepot } from './lib/depot.mjs';
import { TUS_PATH, tusRequest } from './lib/tus-node.mjs';
import { TUSPY_VERSION, ensureTuspy } from './lib/tus-python.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const MiB = 1024 * 1024;
const SIZE = 10 * MiB + 777;

/** Runs `python script args`; resolves { code, stdout, stderr }. */
function runPython(python, env, args, timeoutMs) {
  return new Promise((resolve, reject) => {
    execFile(python, args, { env, timeout: timeoutMs, maxBuffer: 8 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') reject(new Error(`${python} ${args.join(' ')}: ${err.message}\n${stderr}`));
      else resolve({ code: err ? err.code : 0, stdout, stderr });
    });
  });
}

describe(`tuspy ${TUSPY_VERSION} against depot's tus endpoint`, { timeout: 360_000 }, () => {
  let py;
  let depot;
  let work;

  before(async () => {
    py = await ensureTuspy();
    if (py.skip) return;
    work = makeTempDir('tuspy');
    depot = await startDepot();
  }, { timeout: 330_000 });

  after(async () => {
    const exit = await depot?.stop();
    if (work) removeTempDir(work);
    const log = depot?.stderr().split('\n').filter((l) => l.trim() && !l.includes('depot listening on'));
    if (log?.length) console.log(`depot stderr (tuspy):\n${log.join('\n')}`);
    if (exit && (exit.code !== 0 || exit.signal)) {
      throw new Error(`depot did not exit cleanly on SIGTERM: ${JSON.stringify(exit)}`);
    }
  });

  it('10 MiB: resumed from tuspy\'s URL storage, with sha1 checksums, and with the asyncio uploader', async (t) => {
    if (py.skip) {
      t.skip(py.skip);
      return;
    }
    const bytes = deterministicBytes('tuspy-10MiB', SIZE);
    const dataFile = join(work, 'data.bin');
    writeFileSync(dataFile, bytes);
    const endpoint = depot.url + TUS_PATH;
    const started = performance.now();
    // The token goes to tuspy in its environment (not on a command line).
    const env = { ...py.env };
    delete env.DEPOT_TOKEN;
    if (depot.token) env.DEPOT_TOKEN = depot.token;
    const res = await runPython(py.python, env, [join(here, 'tus_py_test.py'), endpoint, dataFile, work], 120_000);
    const elapsed = performance.now() - started;
    assert.equal(res.code, 0, `tus_py_test.py exited ${res.code}\nstdout:\n${res.stdout}\nstderr:\n${res.stderr}`);
    const out = JSON.parse(res.stdout);
    assert.equal(out.size, SIZE);
    if (depot.token) assert.equal(out.no_token, 401, 'tuspy without the token was refused with 401');

    // The resumed upload stopped and went on at 4 MiB, on one upload URL.
    assert.equal(out.resume.stopped_at, 4 * MiB);
    assert.equal(out.resume.resumed_at, 4 * MiB);
    assert.ok(out.resume.url.startsWith(endpoint), `upload URL ${out.resume.url}`);
    const head = await tusRequest('HEAD', out.resume.url, depot.auth);
    assert.equal(head.status, 200);
    assert.equal(Number(head.headers.get('upload-offset')), SIZE);
    assert.equal(head.headers.get('depot-file-id'), out.resume.file_id);
    assert.equal(out.checksum.patches, Math.ceil(SIZE / (3 * MiB)));

    const ids = [out.resume.file_id, out.checksum.file_id, out.async.file_id];
    assert.equal(new Set(ids).size, 3, 'three files');
    const listed = (await getJson(depot.url, '/api/files', depot.auth)).files;
    for (const run of [out.resume, out.checksum, out.async]) {
      const f = listed.find((x) => x.id === run.file_id);
      assert.ok(f, `file ${run.file_id} is listed`);
      assert.equal(f.name, run.name);
      assert.equal(f.size, SIZE);
      const got = await getBytes(depot.url, `/api/files/${run.file_id}`, depot.auth);
      assert.equal(got.status, 200);
      assert.equal(sha256(got.body), sha256(bytes), `downloaded bytes of ${run.name} (sha256)`);
    }
    // Three copies of the same bytes: stored once.
    const stats = await getJson(depot.url, '/api/stats', depot.adminAuth);
    assert.equal(stats.files, 3);
    assert.equal(stats.logical_bytes, 3 * SIZE);
    assert.equal(stats.unique_bytes, SIZE, 'the three copies share their chunks');
    t.diagnostic(`tuspy: three 10 MiB uploads in ${(elapsed / 1000).toFixed(2)} s (including Python start-up)`);
  });
});
