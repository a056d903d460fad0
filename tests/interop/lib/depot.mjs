// Starts a depot server on an ephemeral port with a fresh data directory,
// and small helpers for its JSON API.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { makeTempDir, removeTempDir, trackChild } from './cleanup.mjs';

export function depotBinary() {
  if (process.env.DEPOT_BIN) return process.env.DEPOT_BIN;
  const target = process.env.CARGO_TARGET_DIR || join(homedir(), '.cache', 'depot-target');
  return join(target, 'debug', 'depot');
}

// Matched on complete lines only: stderr may arrive split mid-address.
const LISTENING = /^depot listening on (http:\/\/\S+)/m;

/** `env`: extra DEPOT_* settings (e.g. { DEPOT_AUTH_MODE: 'token' }). */
export async function startDepot({ timeoutMs = 20_000, env = {} } = {}) {
  const bin = depotBinary();
  if (!existsSync(bin)) throw new Error(`depot binary not found at ${bin} (set DEPOT_BIN)`);
  const dataDir = makeTempDir('data');
  const child = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
    env: { ...process.env, DEPOT_RATE_LIMIT: 'false', DEPOT_LOG: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  trackChild(child);
  // Settles when the process is gone, or was never started (spawn 'error').
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (error) => child.pid === undefined && resolve({ code: null, signal: null, error }));
  });
  let stderr = '';
  child.stdout.on('data', () => {});
  child.stderr.setEncoding('utf8');

  let url;
  try {
    url = await new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`depot did not report its address within ${timeoutMs} ms; stderr:\n${stderr}`)),
        timeoutMs,
      );
      child.stderr.on('data', (text) => {
        stderr += text;
        const m = LISTENING.exec(stderr.slice(0, stderr.lastIndexOf('\n') + 1));
        if (m) {
          clearTimeout(timer);
          resolve(m[1].replace(/\/$/, ''));
        }
      });
      exited.then(({ code, signal, error }) => {
        clearTimeout(timer);
        reject(error ?? new Error(`depot exited (code ${code}, signal ${signal}) before listening; stderr:\n${stderr}`));
      });
    });
  } catch (e) {
    child.kill('SIGKILL');
    await exited;
    removeTempDir(dataDir);
    throw e;
  }

  let stopped = false;
  let exitStatus;
  return {
    url,
    dataDir,
    /** Everything depot wrote to stderr so far. */
    stderr: () => stderr,
    async stop() {
      if (stopped) return;
      stopped = true;
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        exitStatus = await exited;
        clearTimeout(timer);
      }
      removeTempDir(dataDir);
      return exitStatus;
    },
  };
}

/** GET a JSON document; asserts a 200 answer. */
export async function getJson(base, path) {
  const res = await fetch(base + path);
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET ${base}${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

/** GET bytes; returns { status, headers, body: Buffer }. */
export async function getBytes(base, path, headers = {}) {
  const res = await fetch(base + path, { headers });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}
