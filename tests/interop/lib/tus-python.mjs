// tuspy (PyPI `tuspy`, pinned) for tus_py_test.py: a Python 3 interpreter
// and a PYTHONPATH that holds tuspy. tuspy and its dependencies are
// installed with pip into node_modules/.tuspy-VERSION (so they go with
// node_modules, and nothing is added to the interpreter's own packages)
// when that folder does not hold this version yet.
import { execFile } from 'node:child_process';
import { existsSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));

export const TUSPY_VERSION = '1.1.0';
const target = join(here, '..', 'node_modules', `.tuspy-${TUSPY_VERSION}`);

async function tuspyVersion(python, env) {
  try {
    const { stdout } = await run(python, ['-c', 'import tusclient, importlib.metadata as m; print(m.version("tuspy"))'], {
      env,
      timeout: 30_000,
    });
    return stdout.trim();
  } catch {
    return undefined;
  }
}

/**
 * Returns { python, env } with tuspy importable, installing it first when
 * needed, or { skip: reason } when there is no Python 3 at all. A failed
 * install throws (with pip's output).
 */
export async function ensureTuspy() {
  const python = process.env.PYTHON || 'python3';
  try {
    await run(python, ['-c', 'import sys; assert sys.version_info >= (3, 8)'], { timeout: 30_000 });
  } catch (e) {
    return { skip: `no usable Python 3 (${python}): ${e.code === 'ENOENT' ? 'not found' : e.message}` };
  }
  const env = { ...process.env, PYTHONPATH: target, PYTHONDONTWRITEBYTECODE: '1' };
  if ((await tuspyVersion(python, env)) === TUSPY_VERSION) return { python, env };

  // Install next to the final folder, then move it into place.
  const staging = `${target}.partial`;
  rmSync(staging, { recursive: true, force: true });
  try {
    await run(
      python,
      [
        '-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '--quiet',
        '--target', staging, `tuspy==${TUSPY_VERSION}`,
      ],
      { env: { ...process.env, PIP_ROOT_USER_ACTION: 'ignore' }, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 },
    );
  } catch (e) {
    rmSync(staging, { recursive: true, force: true });
    throw new Error(`pip install tuspy==${TUSPY_VERSION} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
  if (existsSync(target)) rmSync(target, { recursive: true, force: true });
  renameSync(staging, target);
  const version = await tuspyVersion(python, env);
  if (version !== TUSPY_VERSION) throw new Error(`tuspy ${TUSPY_VERSION} is not importable after pip install (found ${version})`);
  return { python, env };
}
