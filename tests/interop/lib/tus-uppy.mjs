// Uppy (@uppy/core + @uppy/tus) in a page: the two packages are bundled for
// the browser with esbuild, as an application would, and served with a bare
// page and the test data by a small server on its own ephemeral port (so
// every tus request from the page is a cross-origin request to depot).
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));

const ENTRY = `
import Uppy from '@uppy/core';
import Tus from '@uppy/tus';
window.Uppy = Uppy;
window.UppyTus = Tus;
`;

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Uppy tus against depot</title>
<script src="/uppy.js"></script></head><body></body></html>
`;

export async function bundleUppy() {
  const out = await build({
    stdin: { contents: ENTRY, resolveDir: join(here, '..'), sourcefile: 'uppy-entry.js' },
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'es2022',
    write: false,
    logLevel: 'silent',
  });
  return out.outputFiles[0].contents;
}

/** Serves `/` (the page), `/uppy.js` (the bundle) and `/data/NAME` (bytes). */
export async function startUppyServer(bundle, data) {
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    if (req.method === 'GET' && path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(PAGE);
    } else if (req.method === 'GET' && path === '/uppy.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' }).end(bundle);
    } else if (req.method === 'GET' && path.startsWith('/data/') && data.has(path.slice(6))) {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'cache-control': 'no-store' }).end(data.get(path.slice(6)));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Runs in the page: uploads `/data/{name}` with Uppy's Tus plugin and
 * resolves with what the page saw: { result, exchanges, fileIdHeader,
 * pausedAt, events }. With `pauseAt` (a fraction), the file is paused once
 * progress passes it and resumed as soon as the pause is reported.
 * Each exchange: { method, url, offset, status, responseOffset,
 * responseLength, fileId, and the IETF draft's interop, complete, limit,
 * location } from tus-js-client's request hooks.
 */
export function uppyUploadInPage({ endpoint, name, type, tus, pauseAt }) {
  return (async () => {
    const blob = await (await fetch(`/data/${name}`)).blob();
    const exchanges = [];
    const byReq = new Map();
    const events = [];
    let pausedAt;
    let fileIdHeader;
    const uppy = new window.Uppy({ autoProceed: false });
    uppy.use(window.UppyTus, {
      endpoint,
      retryDelays: null,
      ...tus,
      onBeforeRequest(req) {
        const x = { method: req.getMethod(), url: req.getURL(), offset: req.getHeader('Upload-Offset') };
        exchanges.push(x);
        byReq.set(req, x);
      },
      onAfterResponse(req, res) {
        const x = byReq.get(req);
        x.status = res.getStatus();
        x.responseOffset = res.getHeader('Upload-Offset');
        x.responseLength = res.getHeader('Upload-Length');
        x.fileId = res.getHeader('Depot-File-Id');
        // The IETF draft's, in its modes (null when CORS hides them).
        x.interop = res.getHeader('Upload-Draft-Interop-Version');
        x.complete = res.getHeader('Upload-Complete');
        x.limit = res.getHeader('Upload-Limit');
        x.location = res.getHeader('Location');
      },
    });
    const id = uppy.addFile({ name, type, data: new File([blob], name, { type }) });
    if (pauseAt !== undefined) {
      uppy.on('upload-progress', (file, p) => {
        if (pausedAt === undefined && p.bytesUploaded > pauseAt * p.bytesTotal) {
          pausedAt = p.bytesUploaded;
          uppy.pauseResume(id);
        }
      });
      uppy.on('upload-pause', (file, isPaused) => {
        events.push(isPaused ? 'paused' : 'resumed');
        if (isPaused) uppy.pauseResume(id);
      });
    }
    uppy.on('upload-success', (file, response) => {
      // The last answer's xhr, as the page sees it: CORS must expose the header.
      fileIdHeader = response.body.xhr.getResponseHeader('Depot-File-Id');
    });
    const result = await uppy.upload();
    return {
      result: {
        successful: result.successful.map((f) => ({ name: f.name, size: f.size, uploadURL: f.response?.uploadURL })),
        failed: result.failed.map((f) => ({ name: f.name, error: String(f.error) })),
      },
      exchanges,
      fileIdHeader,
      pausedAt,
      events,
    };
  })();
}
