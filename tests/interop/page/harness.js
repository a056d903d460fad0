// Wires resumable.js or flow.js to the page's file input the way an
// application would, and reports the outcome of one upload to the test.
/* global Resumable, Flow, hashwasm */
(function () {
  'use strict';

  // Hashes a piece (BLAKE3, hex) before it is tested, so that the test GET
  // and the POST carry <prefix>ChunkHash.
  function hashingOptions(prefix) {
    const key = prefix + 'ChunkHash';
    return {
      preprocess(chunk) {
        chunk.fileObj.file
          .slice(chunk.startByte, chunk.endByte)
          .arrayBuffer()
          .then((buf) => hashwasm.blake3(new Uint8Array(buf)))
          .then(
            (hex) => {
              chunk.depotBlake3 = hex;
              chunk.preprocessFinished();
            },
            (e) => window.depotHarness.fail('hashing failed: ' + e),
          );
      },
      query(file, chunk) {
        return chunk && chunk.depotBlake3 ? { [key]: chunk.depotBlake3 } : {};
      },
    };
  }

  const PERMANENT_ERRORS = {
    resumable: [400, 401, 403, 404, 415, 500, 501],
    flow: [401, 403, 404, 413, 415, 500, 501],
  };

  const harness = {
    result: null,
    fail: null,

    /**
     * opts: { lib: 'resumable' | 'flow', target, chunkSize, simultaneousUploads,
     *         headers?, hashPieces? }
     * After this, hand a file to #file; `depotHarness.result` settles with
     * { message, pieces, identifier } when the library reports the file uploaded.
     */
    prepare(opts) {
      let resolve;
      let reject;
      harness.result = new Promise((res, rej) => {
        resolve = res;
        reject = rej;
      });
      // The library may fail the file before the test asks for the
      // outcome: a rejection nobody awaits yet must not count as a page error.
      harness.result.catch(() => {});
      harness.fail = (msg) => reject(new Error(msg));
      const prefix = opts.lib === 'resumable' ? 'resumable' : 'flow';
      const common = {
        target: opts.target,
        chunkSize: opts.chunkSize,
        simultaneousUploads: opts.simultaneousUploads,
        testChunks: true,
        // The token goes in `headers`, which both libraries send with the
        // test GET and the POST of every piece.
        headers: opts.headers || {},
        // Each library's defaults plus 401 and 403: a refused token is
        // permanent, and otherwise resumable.js retries it up to
        // maxChunkRetries and flow.js sends the piece after a refused test.
        permanentErrors: PERMANENT_ERRORS[prefix],
      };
      const extra = opts.hashPieces ? hashingOptions(prefix) : {};
      let up;
      if (opts.lib === 'resumable') {
        // A transport failure is retried (not a permanent error): bound it so
        // that a broken server fails the test instead of spinning.
        up = new Resumable(Object.assign(common, { maxChunkRetries: 2, chunkRetryInterval: 250 }, extra));
      } else if (opts.lib === 'flow') {
        up = new Flow(Object.assign(common, extra));
      } else {
        throw new Error('unknown library ' + opts.lib);
      }
      if (!up.support) throw new Error(opts.lib + ' reports no browser support');
      up.assignBrowse(document.getElementById('file'));
      // Each library's documented way to start once a file is picked.
      up.on(opts.lib === 'resumable' ? 'fileAdded' : 'filesSubmitted', () => up.upload());
      up.on('fileSuccess', (file, message) => {
        resolve({
          message,
          pieces: file.chunks.length,
          identifier: file.uniqueIdentifier,
        });
      });
      up.on('fileError', (file, message) => reject(new Error(opts.lib + ' fileError: ' + message)));
      harness.uploader = up;
    },
  };
  window.depotHarness = harness;
})();
