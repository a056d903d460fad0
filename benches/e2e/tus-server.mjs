// The tus peer: @tus/server with @tus/file-store, receiving uploads into a
// directory. Usage: node tus-server.mjs DIR
// Listens on 127.0.0.1 on an ephemeral port and prints one line on stdout:
//   tus listening on http://127.0.0.1:PORT/files/
// Stops on SIGTERM or SIGINT.
import { Server } from '@tus/server'
import { FileStore } from '@tus/file-store'

const directory = process.argv[2]
if (!directory) {
  console.error('usage: node tus-server.mjs DIR')
  process.exit(2)
}

const tus = new Server({ path: '/files', datastore: new FileStore({ directory }) })
const http = tus.listen({ host: '127.0.0.1', port: 0 }, () => {
  const { port } = http.address()
  console.log(`tus listening on http://127.0.0.1:${port}/files/`)
})
const stop = () => http.close(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
