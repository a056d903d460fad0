// Bundles the page's third-party code into this directory (run by
// refresh.sh): Uppy's core, Dashboard and tus uploader as one script that
// sets `window.DepotVendor`, their styles as one sheet, hash-wasm's BLAKE3
// build for the hashing worker, and the licence of every package that ends
// up in a bundle.
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const mod = (p) => join(here, 'node_modules', p);

const ENTRY = `
import Uppy, { BasePlugin } from '@uppy/core';
import Dashboard from '@uppy/dashboard';
import Tus from '@uppy/tus';
window.DepotVendor = { Uppy, BasePlugin, Dashboard, Tus };
`;

const out = await build({
  stdin: { contents: ENTRY, resolveDir: here, sourcefile: 'vendor-entry.js' },
  bundle: true,
  minify: true,
  format: 'iife',
  platform: 'browser',
  target: 'es2020',
  legalComments: 'eof',
  metafile: true,
  write: false,
  logLevel: 'warning',
});
writeFileSync(join(here, 'uppy.min.js'), out.outputFiles[0].contents);

const css = ['@uppy/core/dist/style.min.css', '@uppy/dashboard/dist/style.min.css']
  .map((p) => `/* ${p} */\n${readFileSync(mod(p), 'utf8')}\n`)
  .join('');
writeFileSync(join(here, 'uppy.min.css'), css);
copyFileSync(mod('hash-wasm/dist/blake3.umd.min.js'), join(here, 'blake3.umd.min.js'));

// Every package with a file in a bundle, and its licence.
const packages = new Set(['hash-wasm']);
for (const input of Object.keys(out.metafile.inputs)) {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (m) packages.add(m[1]);
}
const licences = join(here, 'licenses');
rmSync(licences, { recursive: true, force: true });
mkdirSync(licences);
const listing = [];
for (const name of [...packages].sort()) {
  const dir = mod(name);
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const file = readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f));
  const target = join(licences, `${name.replace('/', '__')}.txt`);
  if (file) {
    copyFileSync(join(dir, file), target);
  } else {
    // A few small packages ship none: record what their package.json declares.
    const author = typeof pkg.author === 'object' ? pkg.author.name : pkg.author;
    writeFileSync(target, `${name} ${pkg.version}: "${pkg.license}" per its package.json (no licence file in the package)${author ? `; author: ${author}` : ''}\n`);
  }
  listing.push(`${name} ${pkg.version} ${pkg.license}`);
}
writeFileSync(join(here, 'VERSIONS'), listing.join('\n') + '\n');
console.log(listing.join('\n'));
if (!existsSync(join(here, 'uppy.min.js'))) process.exit(1);
