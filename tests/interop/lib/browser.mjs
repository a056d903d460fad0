// Headless Chromium (the distribution's build) through playwright-core, with
// a fresh, empty profile directory.
import { readlinkSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { chromium } from 'playwright-core';
import { atExit, makeTempDir, removeTempDir } from './cleanup.mjs';

export const CHROMIUM = '/usr/bin/chromium';

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export async function launchBrowser() {
  const profile = makeTempDir('profile');
  // A Chromium killed at exit leaves its singleton socket directory (named by
  // a link in the profile) behind; remove it too.
  const forget = atExit(() => {
    const socketDir = dirname(readlinkSync(join(profile, 'SingletonSocket')));
    if (basename(socketDir).startsWith('org.chromium.Chromium.')) rmSync(socketDir, { recursive: true, force: true });
  });
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      timeout: 30_000,
    });
  } catch (e) {
    forget();
    removeTempDir(profile);
    throw e;
  }
  return {
    context,
    async close() {
      try {
        await context.close();
      } finally {
        forget();
        removeTempDir(profile);
      }
    },
  };
}
