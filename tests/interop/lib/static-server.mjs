// A tiny static server for the test page and the upload libraries, on its
// own ephemeral port: a different origin from depot's, so the browser applies
// CORS to every upload request.
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

const JS = 'text/javascript; charset=utf-8';
const ROUTES = {
  '/': { file: join(here, '..', 'page', 'index.html'), type: 'text/html; charset=utf-8' },
  '/harness.js': { file: join(here, '..', 'page', 'harness.js'), type: JS },
  '/lib/resumable.js': { file: require.resolve('resumablejs/resumable.js'), type: JS },
  '/lib/flow.js': { file: join(dirname(require.resolve('@flowjs/flow.js/package.json')), 'dist', 'flow.js'), type: JS },
  '/lib/blake3.js': { file: join(dirname(require.resolve('hash-wasm/package.json')), 'dist', 'blake3.umd.min.js'), type: JS },
};

export async function startStaticServer() {
  const server = createServer(async (req, res) => {
    const route = ROUTES[new URL(req.url, 'http://x').pathname];
    if (req.method !== 'GET' || !route) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    try {
      const body = await readFile(route.file);
      res.writeHead(200, { 'content-type': route.type, 'cache-control': 'no-store' }).end(body);
    } catch (e) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e}\n`);
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
