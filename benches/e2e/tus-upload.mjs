// The tus client: tus-js-client in Node uploading one file.
// Usage: node tus-upload.mjs ENDPOINT FILE [CHUNK_SIZE_BYTES]
// Without CHUNK_SIZE_BYTES the whole file goes in one PATCH (the library's
// default). On success prints one JSON line on stdout:
//   {"url": "...", "bytes": N, "seconds": S, "file_id": "..." | null}
// (file_id: depot's Depot-File-Id header on the last PATCH, when present).
// Exits 1 on any error; nothing is retried.
import fs from 'node:fs'
import path from 'node:path'
import * as tus from 'tus-js-client'

const [endpoint, file, chunk] = process.argv.slice(2)
if (!endpoint || !file) {
  console.error('usage: node tus-upload.mjs ENDPOINT FILE [CHUNK_SIZE_BYTES]')
  process.exit(2)
}
const size = fs.statSync(file).size
let fileId = null
const started = process.hrtime.bigint()
const upload = new tus.Upload(fs.createReadStream(file), {
  endpoint,
  uploadSize: size,
  chunkSize: chunk ? Number(chunk) : Infinity,
  retryDelays: null,
  storeFingerprintForResuming: false,
  metadata: { filename: path.basename(file), filetype: 'application/octet-stream' },
  onAfterResponse: (_req, res) => {
    const id = res.getHeader('Depot-File-Id')
    if (id) fileId = id
  },
  onError: (err) => {
    console.error(`error: ${err.message || err}`)
    process.exit(1)
  },
  onSuccess: () => {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    console.log(JSON.stringify({ url: upload.url, bytes: size, seconds, file_id: fileId }))
  },
})
upload.start()
