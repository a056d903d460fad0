// Starts a depot server on an ephemeral port with a fresh data directory,
// and small helpers for its JSON API.
//
// The server runs in token mode (DEPOT_AUTH_MODE=token) unless
// DEPOT_TEST_AUTH=local, or a test asks for `auth: 'local'`: its admin token is read from
// <data-dir>/admin.token, and a token of tenant "interop" with scopes read,
// write and delete is made through the admin API. Every client under test
// sends that token (`depot.auth`, the header to add); the store-wide numbers
// (/api/stats) are read with the admin token (`depot.adminAuth`).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { makeTempDir, removeTempDir, trackChild } from './cleanup.mjs';

export const AUTH_MODE = process.env.DEPOT_TEST_AUTH || 'token';
if (!['token', 'local'].includes(AUTH_MODE)) throw new Error(`DEPOT_TEST_AUTH must be token or local, not ${AUTH_MODE}`);
export const TENANT = 'interop';

/** `{ Authorization: 'Bearer …' }`, or no header without a token. */
export const bearer = (token) => (token ? { Authorization: `Bearer ${token}` } : {});

/** Makes a token with `adminToken` through the admin API; returns its string. */
export async function makeToken(base, adminToken, { tenant = TENANT, scopes = ['read', 'write', 'delete'], name = 'interop' } = {}) {
  const res = await fetch(`${base}/api/admin/tokens`, {
    method: 'POST',
    headers: { ...bearer(adminToken), 'Content-Type': 'application/json' },
    body: JSON.stringify({ tenant, scopes, name }),
  });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`POST /api/admin/tokens: ${res.status} ${text}`);
  return JSON.parse(text).token;
}

/** The admin token a server in token mode wrote to its data directory. */
function adminTokenOf(dataDir, stderr) {
  const file = join(dataDir, 'admin.token');
  if (!existsSync(file)) {
    throw new Error(
      `token mode: the server wrote no ${file} (a server without token mode? DEPOT_TEST_AUTH=local runs without); stderr:\n${stderr}`,
    );
  }
  const mode = statSync(file).mode & 0o777;
  if (mode !== 0o600) throw new Error(`${file} has mode ${mode.toString(8)}, not 600`);
  return readFileSync(file, 'utf8').trim();
}

export function depotBinary() {
  if (process.env.DEPOT_BIN) return process.env.DEPOT_BIN;
  const target = process.env.CARGO_TARGET_DIR || join(homedir(), '.cache', 'depot-target');
  return join(target, 'debug', 'depot');
}

// Matched on complete lines only: stderr may arrive split mid-address.
const LISTENING = /^depot listening on (http:\/\/\S+)/m;

/** `env`: extra DEPOT_* settings (e.g. { DEPOT_AUTH_MODE: 'token' }). */
export async function startDepot({ timeoutMs = 20_000, env: extra = {}, auth = AUTH_MODE } = {}) {
  const bin = depotBinary();
  if (!existsSync(bin)) throw new Error(`depot binary not found at ${bin} (set DEPOT_BIN)`);
  const dataDir = makeTempDir('data');
  const env = { ...process.env, DEPOT_RATE_LIMIT: 'false', DEPOT_LOG: 'warn' };
  delete env.DEPOT_TOKEN;
  if (auth === 'token') env.DEPOT_AUTH_MODE = 'token';
  else delete env.DEPOT_AUTH_MODE;
  Object.assign(env, extra);
  const child = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
    env,
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
  let adminToken;
  let token;
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
    if (auth === 'token') {
      adminToken = adminTokenOf(dataDir, stderr);
      token = await makeToken(url, adminToken);
    }
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
    /** The tenant token the clients under test use (undefined in local mode). */
    token,
    adminToken,
    /** The header that carries `token`; `{}` in local mode. */
    auth: bearer(token),
    /** The header that carries the admin token; `{}` in local mode. */
    adminAuth: bearer(adminToken),
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

/** GET a JSON document (with `headers`, e.g. `depot.auth`); asserts a 200 answer. */
export async function getJson(base, path, headers = {}) {
  const res = await fetch(base + path, { headers });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET ${base}${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

/** GET bytes; returns { status, headers, body: Buffer }. */
export async function getBytes(base, path, headers = {}) {
  const res = await fetch(base + path, { headers });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}
