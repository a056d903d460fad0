import { launchBrowser } from './lib/browser.mjs';
import { startDepot } from './lib/depot.mjs';
const N = Number(process.env.N || 256) * 1024 * 1024;
const bins = process.argv.slice(2);
const browser = await launchBrowser();
for (let round = 0; round < Number(process.env.R || 3); round++) {
  for (const bin of (round % 2 ? [...bins].reverse() : bins)) {
    process.env.DEPOT_BIN = bin;
    const depot = await startDepot({ auth: 'local' });
    const page = await browser.context.newPage();
    page.on('pageerror', (e) => console.log('pageerror', String(e)));
    await page.goto(`${depot.url}/`);
    await page.waitForSelector('body[data-ready="true"]');
    await page.evaluate((n) => {
      const parts = [];
      for (let i = 0; i < n / 65536; i++) { const a = new Uint8Array(65536); crypto.getRandomValues(a); parts.push(a); }
      window.blob = new Blob(parts);
    }, N);
    const t0 = Date.now();
    await page.evaluate(() => {
      const dt = new DataTransfer();
      dt.items.add(new File([window.blob], 'x.bin', { type: 'application/octet-stream' }));
      const target = document.querySelector('.uppy-Dashboard-inner');
      for (const type of ['dragenter', 'dragover', 'drop']) target.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
    });
    for (;;) {
      const f = await page.evaluate(() => { const f = window.depotUppy.getFiles()[0]; return f && { c: !!f.progress.uploadComplete, p: f.progress.bytesUploaded, e: f.error || null }; });
      if (f?.e) { console.log('error', f.e); break; }
      if (f?.c) break;
      if (Date.now() - t0 > 20000 && process.env.DBG) { console.log(JSON.stringify(f)); }
      await new Promise((r) => setTimeout(r, 50));
    }
    const ms = Date.now() - t0;
    console.log(`${bin.split('/').pop()} ${(N / 1e6 / (ms / 1000)).toFixed(0)} MB/s (${ms} ms)`);
    await page.close();
    await depot.stop();
  }
}
await browser.close();
