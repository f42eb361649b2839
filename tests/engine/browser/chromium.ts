// Headless Chromium with WebGPU on SwiftShader (or the machine's GPU), driven by playwright-core.
// A fresh user-data-dir per launch in a tmp dir: no profile state leaks between runs or into
// the developer's own profile. Flags as in DEVELOPERS.md.

import { chromium, type BrowserContext } from 'playwright-core';
import { mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppError } from '../../../shared/errors.ts';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const CHROMIUM_FLAGS = [
  '--headless=new',
  '--no-sandbox',
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--use-vulkan=swiftshader',
  '--use-webgpu-adapter=swiftshader',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

export interface Chromium {
  context: BrowserContext;
  close(): Promise<void>;
}

export async function launchChromium(): Promise<Chromium> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new AppError('ERR_NO_CHROMIUM', `browser conformance: no Chromium at ${CHROMIUM_PATH}`, 500,
      'apt-get install chromium (tests/run-all.sh does), or set CHROMIUM_PATH');
  }
  const userDataDir = await mkdtemp(join(tmpdir(), 'engine-conformance-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_FLAGS,
    });
  } catch (e) {
    await rm(userDataDir, { recursive: true, force: true });
    throw e;
  }
  return {
    context,
    async close() {
      await context.close().catch(() => undefined);
      await rm(userDataDir, { recursive: true, force: true });
    },
  };
}
