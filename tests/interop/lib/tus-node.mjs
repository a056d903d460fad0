// Drives tus-js-client (its Node.js build) against depot's tus endpoint and
// records every request it sends and every answer it gets.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import * as tus from 'tus-js-client';
import { withTimeout } from './drive.mjs';

const require = createRequire(import.meta.url);
export const TUS_JS_CLIENT_VERSION = require('tus-js-client/package.json').version;
export { tus };

export const TUS_PATH = '/api/tus/';

// The request headers of interest (tus-js-client sets them with this case).
const REQUEST_HEADERS = [
  'Tus-Resumable',
  'Upload-Offset',
  'Upload-Length',
  'Upload-Defer-Length',
  'Upload-Concat',
  'Upload-Metadata',
  'Content-Type',
  'Upload-Draft-Interop-Version',
  'Upload-Complete',
];
// The answer headers of interest (Node lower-cases them).
const RESPONSE_HEADERS = [
  'tus-resumable',
  'location',
  'upload-offset',
  'upload-length',
  'upload-expires',
  'depot-file-id',
  'upload-complete',
];

function pick(get, names) {
  const out = {};
  for (const n of names) {
    const v = get(n);
    if (v !== undefined && v !== null) out[n.toLowerCase()] = String(v);
  }
  return out;
}

/** One line per exchange, for assertion messages. */
export function describeExchanges(exchanges) {
  return exchanges
    .map((x) => {
      const req = Object.entries(x.request).map(([k, v]) => `${k}: ${v}`).join(', ');
      const res = x.status === undefined ? 'no answer' : `${x.status} ${JSON.stringify(x.response)} ${x.body || ''}`;
      return `  ${x.method} ${x.url} [${req}] -> ${res}`;
    })
    .join('\n');
}

function describeError(err, exchanges) {
  const res = err?.originalResponse;
  const detail = res ? ` (last answer ${res.getStatus()}: ${res.getBody()})` : '';
  return new Error(`tus upload failed: ${err?.message ?? err}${detail}\nexchanges:\n${describeExchanges(exchanges)}`, {
    cause: err,
  });
}

/**
 * Starts a tus-js-client upload of `input` (a Buffer or a Readable) with
 * `options` on top of these defaults: no retries (a failed request fails the
 * test instead of being retried), every request and answer recorded.
 *
 * `onProgress(bytes, total, upload)` is called with the upload object, so a
 * caller can abort from it.
 *
 * Returns { upload, exchanges, done }, where `done` resolves when the upload
 * succeeds, with { lastResponse, exchanges, elapsedMs }, and rejects on
 * onError with the exchanges in the message. `exchanges` (live) lists every
 * request in the order sent: { method, url, request: {header: value},
 * status, response: {header: value}, body }; status is undefined for a
 * request that got no answer (an aborted one).
 */
export function startTusUpload(input, { onProgress, ...options } = {}) {
  const exchanges = [];
  const byRequest = new Map();
  const started = performance.now();
  let upload;
  const done = new Promise((resolve, reject) => {
    upload = new tus.Upload(input, {
      retryDelays: null,
      ...options,
      onBeforeRequest(req) {
        const x = {
          method: req.getMethod(),
          url: req.getURL(),
          request: pick((n) => req.getHeader(n), REQUEST_HEADERS),
          status: undefined,
          response: {},
          body: undefined,
        };
        exchanges.push(x);
        byRequest.set(req, x);
      },
      onAfterResponse(req, res) {
        const x = byRequest.get(req);
        x.status = res.getStatus();
        x.response = pick((n) => res.getHeader(n), RESPONSE_HEADERS);
        x.body = res.getBody();
      },
      onProgress: onProgress && ((bytes, total) => onProgress(bytes, total, upload)),
      onSuccess({ lastResponse }) {
        resolve({ lastResponse, exchanges, elapsedMs: performance.now() - started });
      },
      onError(err) {
        reject(describeError(err, exchanges));
      },
    });
  });
  return { upload, exchanges, done };
}

/**
 * Starts an upload and stops it once more than `fraction` of its bytes are
 * sent: `stop(upload)` runs once (`upload.abort()` to resume later,
 * `upload.abort(true)` to terminate). Returns the run and what `stop`
 * returned; fails if the upload finishes first or gets no such progress
 * within `ms`.
 */
export async function stopPast(input, options, fraction, stop, ms) {
  let stopped;
  let reached;
  const past = new Promise((resolve) => {
    reached = resolve;
  });
  const run = startTusUpload(input, {
    ...options,
    onProgress(sent, total, upload) {
      if (stopped === undefined && sent > fraction * total) {
        stopped = stop(upload);
        reached();
      }
    },
  });
  run.upload.start();
  await withTimeout(
    Promise.race([past, run.done.then(() => assert.fail('the upload finished before it was aborted'))]),
    ms,
    `progress past ${Math.round(fraction * 100)}%`,
  );
  return { run, stopped };
}

/** Runs a whole upload: startTusUpload(...).done after upload.start(). */
export function tusUpload(input, options) {
  const run = startTusUpload(input, options);
  run.upload.start();
  return run.done;
}

/** Sends a tus request of our own (HEAD, OPTIONS, DELETE) with fetch, with `headers` (e.g. `depot.auth`). */
export async function tusRequest(method, url, headers = {}) {
  const res = await fetch(url, { method, headers: { 'Tus-Resumable': '1.0.0', ...headers } });
  await res.arrayBuffer();
  return res;
}

/** MB/s (10^6 bytes per second) of `bytes` in `ms`. */
export function mbPerSecond(bytes, ms) {
  return bytes / 1e6 / (ms / 1000);
}

/**
 * tus-js-client's own Node HTTP stack, except that the PATCH body that
 * crosses upload offset `stallAt` is fed to the connection only up to that
 * offset and then stalls (the request stays open, as on a connection that
 * hangs), and `onStall()` is called once those bytes have been taken by the
 * request. This makes "interrupt the upload after N bytes" independent of
 * how fast the server reads and of how often tus-js-client reports progress.
 */
export class StallingHttpStack extends tus.DefaultHttpStack {
  constructor(stallAt, onStall) {
    super();
    this.stallAt = stallAt;
    this.onStall = onStall;
    this.stalled = false;
  }

  createRequest(method, url) {
    const req = super.createRequest(method, url);
    if (method !== 'PATCH') return req;
    const send = req.send.bind(req);
    req.send = (body) => {
      const start = Number(req.getHeader('Upload-Offset'));
      if (this.stalled || !body || start >= this.stallAt || start + body.length <= this.stallAt) return send(body);
      const head = body.subarray(0, this.stallAt - start);
      let pos = 0;
      const stack = this;
      const stream = new Readable({
        highWaterMark: 64 * 1024,
        read() {
          if (pos < head.length) {
            const n = Math.min(64 * 1024, head.length - pos);
            this.push(head.subarray(pos, pos + n));
            pos += n;
          } else if (!stack.stalled) {
            // Asked for more after the last piece: the request took it all.
            stack.stalled = true;
            setImmediate(() => stack.onStall());
          }
        },
      });
      // The request still declares the whole body (Content-Length).
      stream.size = body.length;
      return send(stream);
    };
    return req;
  }
}
