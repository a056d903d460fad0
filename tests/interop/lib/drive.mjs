// Runs one upload through a library in a fresh page and records what the
// browser sent to depot's chunked-upload endpoint.

/** Rejects after `ms` with a message naming what was awaited. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `cond` every 20 ms until it holds, or fails after `ms`. */
export async function waitFor(cond, ms, what) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Opens the test page, sets the library up against `chunkedUrl`, hands it
 * the file through the file input and waits for the library's fileSuccess
 * (with `expectFailure`, for its fileError instead).
 *
 * Returns { result, error, exchanges, preflights } where `result` is what
 * fileSuccess reported, `error` the fileError message (with
 * `expectFailure`), `exchanges` lists every GET/POST the page sent to
 * `chunkedUrl` in order, each { method, url, status, body } (body as
 * text), and `preflights` lists the CORS preflights Chromium sent there,
 * each { url, requestMethod }.
 */
export async function uploadInPage({
  context,
  pageUrl,
  chunkedUrl,
  lib,
  file,
  options = {},
  timeoutMs = 45_000,
  expectFailure = false,
}) {
  const page = await context.newPage();
  const pending = [];
  const failures = [];
  const pageErrors = [];
  const preflights = [];
  const ours = (url) => url === chunkedUrl || url.startsWith(`${chunkedUrl}?`);
  try {
    // Playwright's request events leave out CORS preflights; the DevTools
    // protocol reports them as requests initiated by "preflight".
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    cdp.on('Network.requestWillBeSent', (e) => {
      if (e.initiator?.type === 'preflight' && ours(e.request.url)) {
        const h = Object.fromEntries(Object.entries(e.request.headers).map(([k, v]) => [k.toLowerCase(), v]));
        preflights.push({ url: e.request.url, requestMethod: h['access-control-request-method'] });
      }
    });
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    const entries = new Map();
    page.on('requestfailed', (r) => {
      if (!ours(r.url())) return;
      failures.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`);
      // A request the library aborted (a failed file's other pieces) may
      // have its answer's head but never its body.
      const entry = entries.get(r);
      if (entry) entry.done = true;
    });
    page.on('request', (r) => {
      if (!ours(r.url())) return;
      const entry = { method: r.method(), url: r.url(), status: undefined, body: undefined, done: false };
      pending.push(entry);
      entries.set(r, entry);
      r.response().then(async (res) => {
        if (res) {
          entry.status = res.status();
          try {
            entry.body = entry.status === 204 ? '' : await res.text();
          } catch (e) {
            entry.error = String(e);
          }
        }
        entry.done = true;
      }, (e) => {
        entry.error = String(e);
        entry.done = true;
      });
    });

    await page.goto(`${pageUrl}/`);
    await page.evaluate((o) => window.depotHarness.prepare(o), { lib, target: chunkedUrl, ...options });
    await page.setInputFiles('#file', file);
    const outcome = page.evaluate(() =>
      window.depotHarness.result.then(
        (result) => ({ result }),
        (e) => ({ error: String(e?.message ?? e) }),
      ),
    );
    const settled = await withTimeout(outcome, timeoutMs, `${lib} to report the upload of ${file.name}`).catch((e) => {
      throw new Error(`${e.message}\npage errors: ${pageErrors.join('; ') || 'none'}\nfailed requests: ${failures.join('; ') || 'none'}`);
    });
    if (expectFailure !== (settled.error !== undefined)) {
      throw new Error(
        expectFailure
          ? `${lib} uploaded ${file.name}, which should have failed`
          : `${settled.error}\nfailed requests: ${failures.join('; ') || 'none'}`,
      );
    }
    // fileSuccess comes after the last answer; let the response events land.
    await waitFor(() => pending.every((x) => x.done), 10_000, 'the responses of the upload requests');
    if (pageErrors.length) throw new Error(`page errors: ${pageErrors.join('; ')}`);
    return {
      result: settled.result,
      error: settled.error,
      exchanges: pending.map(({ method, url, status, body }) => ({ method, url, status, body })),
      preflights,
      failures,
    };
  } finally {
    await page.close();
  }
}
