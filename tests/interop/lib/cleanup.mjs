// What a test process leaves behind is removed when it ends, however it ends:
// child processes are killed first, then temporary directories are deleted.
// A SIGINT/SIGTERM/SIGHUP becomes an ordinary exit so that this still runs.
import { mkdtempSync, rmSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';

const children = new Set();
const dirs = new Set();
const hooks = new Set();

/** Kills `child` (SIGKILL) at process exit unless it has exited by then. */
export function trackChild(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
}

/** Runs `fn` at process exit (after children are killed, before directories go). */
export function atExit(fn) {
  hooks.add(fn);
  return () => hooks.delete(fn);
}

export function makeTempDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), `depot-interop-${prefix}-`));
  dirs.add(dir);
  return dir;
}

export function removeTempDir(dir) {
  dirs.delete(dir);
  rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
}

process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
  for (const fn of hooks) {
    try {
      fn();
    } catch {
      // best effort while exiting
    }
  }
  for (const dir of dirs) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
    } catch {
      // best effort while exiting
    }
  }
});

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => process.exit(128 + constants.signals[sig]));
}
