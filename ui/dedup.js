// depot's dedup protocol as an Uppy uploader, for files of at least
// `threshold` bytes: the hashing worker cuts the file with the server's
// FastCDC parameters and hashes each chunk (BLAKE3); for each block of
// chunks the page asks which ones the server lacks (POST /api/chunks/missing),
// sends only those, several to a request (POST /api/chunks, multipart, within
// the server's `max_batch_chunks` and `max_batch_bytes`), one request at a
// time, and finally commits the manifest (POST /api/files) — what `depot put`
// does. Smaller files are left to the tus uploader, which skips files this
// one completed.
//
// Resuming is the protocol itself: chunks the server received before a
// reload, a dropped connection or a pause are not missing the next time, so
// at most the one batch in flight (which the server stores whole or not at
// all) is sent twice.
/* global DepotVendor */
(function () {
  'use strict';

  const { BasePlugin } = DepotVendor;

  class Cancelled extends Error {}

  // Room for one part's multipart framing (boundary line, Content-Disposition
  // with a 64-digit name and a file name, Content-Type): about 200 bytes in
  // Chromium and Firefox.
  const PART_FRAMING = 512;

  class DepotDedup extends BasePlugin {
    /**
     * opts: { threshold, request(path, init) → Promise<Response>,
     *         failure(response) → Promise<Error>, chunking() → Promise<info>,
     *         onReport({ file, total, sent }) }
     */
    constructor(uppy, opts) {
      super(uppy, opts);
      this.id = opts.id || 'DepotDedup';
      this.type = 'uploader';
      this.controllers = new Map();
      this.upload = this.upload.bind(this);
      this.onRemoved = (file) => this.cancel(file.id);
      this.onCancelAll = () => [...this.controllers.keys()].forEach((id) => this.cancel(id));
    }

    install() {
      this.uppy.addUploader(this.upload);
      this.uppy.on('file-removed', this.onRemoved);
      this.uppy.on('cancel-all', this.onCancelAll);
    }

    uninstall() {
      this.uppy.removeUploader(this.upload);
      this.uppy.off('file-removed', this.onRemoved);
      this.uppy.off('cancel-all', this.onCancelAll);
    }

    cancel(id) {
      const c = this.controllers.get(id);
      if (c) c.abort();
    }

    async upload(fileIDs) {
      const files = fileIDs
        .map((id) => this.uppy.getFile(id))
        .filter((f) => f && !f.error && !f.progress.uploadComplete && !f.isRemote && f.size >= this.opts.threshold);
      if (!files.length) return;
      this.uppy.emit('upload-start', files);
      // One file at a time: the worker and the network each do one thing well.
      for (const file of files) {
        try {
          await this.one(file);
        } catch (err) {
          if (err instanceof Cancelled || !this.uppy.getFile(file.id)) continue;
          this.uppy.emit('upload-error', this.uppy.getFile(file.id), err);
        }
      }
    }

    async whilePaused(id, signal) {
      while (this.uppy.getFile(id) && this.uppy.getFile(id).isPaused) {
        if (signal.aborted) throw new Cancelled();
        await new Promise((r) => setTimeout(r, 150));
      }
      if (signal.aborted || !this.uppy.getFile(id)) throw new Cancelled();
    }

    async call(path, init, signal) {
      let res;
      try {
        res = await this.opts.request(path, { ...init, signal });
      } catch (e) {
        if (signal.aborted) throw new Cancelled();
        throw e;
      }
      if (!res.ok) throw await this.opts.failure(res);
      return res;
    }

    async one(file) {
      const ctrl = new AbortController();
      const { signal } = ctrl;
      this.controllers.set(file.id, ctrl);
      const worker = new Worker('/ui/hash-worker.js');
      try {
        const info = await this.opts.chunking();
        if (info.max_file_size && file.size > info.max_file_size) {
          throw new Error(`${file.name} is larger than this server accepts`);
        }
        const started = Date.now();
        const total = file.size;
        let confirmed = 0;
        let sent = 0;
        const all = [];
        const progress = () =>
          this.uppy.emit('upload-progress', this.uppy.getFile(file.id), {
            uploader: this,
            uploadStarted: started,
            bytesUploaded: confirmed,
            bytesTotal: total,
          });
        progress();

        // The worker's messages as an async queue.
        const inbox = [];
        let wake = null;
        worker.onmessage = (e) => {
          inbox.push(e.data);
          if (wake) wake();
        };
        worker.onerror = (e) => {
          inbox.push({ type: 'error', message: e.message || 'the hashing worker failed' });
          if (wake) wake();
        };
        worker.postMessage({ file: file.data, min: info.min, avg: info.avg, max: info.max });

        // Missing chunks in order, in groups within the server's limits,
        // a group filled across the worker's blocks; progress moves when a
        // group is acknowledged (and over the chunks the server already
        // had before it). (The page comes with the server, which always
        // says its limits.)
        const fits = (parts, bytes) =>
          parts <= info.max_batch_chunks && bytes + (parts + 1) * PART_FRAMING <= info.max_batch_bytes;
        let group = [];
        let groupBytes = 0;
        let through = 0;
        const flush = async () => {
          await this.whilePaused(file.id, signal);
          if (group.length) {
            const form = new FormData();
            for (const c of group) form.append(c.hash, file.data.slice(c.offset, c.offset + c.len, 'application/octet-stream'));
            await this.call('/api/chunks', { method: 'POST', body: form }, signal);
            sent += groupBytes;
            group = [];
            groupBytes = 0;
          }
          confirmed = through;
          progress();
        };

        let offset = 0;
        const sentHere = new Set();
        for (;;) {
          while (!inbox.length) {
            if (signal.aborted) throw new Cancelled();
            await new Promise((r) => (wake = r));
            wake = null;
          }
          const msg = inbox.shift();
          if (msg.type === 'error') throw new Error(`hashing ${file.name} failed: ${msg.message}`);
          if (msg.type === 'end') break;
          const batch = msg.chunks.map(([hash, len]) => {
            const c = { hash, len, offset };
            offset += len;
            return c;
          });
          all.push(...batch);
          if (!batch.length) continue;
          const hashes = [...new Set(batch.map((c) => c.hash))];
          const missing = new Set();
          for (let i = 0; i < hashes.length; i += info.max_missing_query || 10000) {
            const res = await this.call(
              '/api/chunks/missing',
              { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ hashes: hashes.slice(i, i + (info.max_missing_query || 10000)) }) },
              signal,
            );
            (await res.json()).missing.forEach((h) => missing.add(h));
          }
          for (const c of batch) {
            if (missing.has(c.hash) && !sentHere.has(c.hash)) {
              if (group.length && !fits(group.length + 1, groupBytes + c.len)) await flush();
              group.push(c);
              groupBytes += c.len;
              sentHere.add(c.hash);
            }
            through += c.len;
          }
          // A group not yet full waits for the next block's chunks, unless
          // it holds nothing: then progress moves now.
          if (!group.length) await flush();
        }
        await flush();
        if (offset !== total) throw new Error(`${file.name} changed while it was read (${offset} of ${total} bytes)`);

        const body = JSON.stringify({
          name: file.name,
          size: total,
          content_type: file.type || undefined,
          chunks: all.map((c) => ({ hash: c.hash, len: c.len })),
        });
        const res = await this.call('/api/files', { method: 'POST', headers: { 'content-type': 'application/json' }, body }, signal);
        const rec = await res.json();
        this.opts.onReport({ file: this.uppy.getFile(file.id), total, sent, record: rec });
        this.uppy.emit('upload-success', this.uppy.getFile(file.id), {
          status: res.status,
          body: rec,
          uploadURL: new URL(rec.url, location.href).href,
        });
      } finally {
        worker.terminate();
        this.controllers.delete(file.id);
      }
    }
  }

  window.DepotDedup = DepotDedup;
})();
