// The browser suite's runner: bundles test/browser/suite.ts, serves the repository on localhost, runs the page
// in headless Chromium (its WebGPU adapter: SwiftShader here), relays the page's console and ends with the same
// `N passed, N failed, N skipped` line as the Node suite (exit 1 on any failure).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, bundle, launchChromium, serve } from '../../examples/demo/host.ts';

const TIMEOUT_MS = 15 * 60 * 1000;
const began = Date.now();
mkdirSync(join(ROOT, '.build/browser'), { recursive: true });
await bundle('test/browser/suite.ts', '.build/browser/suite.mjs');
writeFileSync(join(ROOT, '.build/browser/suite.html'), '<!doctype html><meta charset="utf-8"><title>clipgpu browser suite</title><link rel="icon" href="data:,"><script type="module" src="suite.mjs"></script>\n');
const server = await serve();
const browser = await launchChromium();
let code = 1;
try {
  const page = await browser.newPage();
  let finished = () => {};
  const done = new Promise<void>((resolve) => (finished = resolve));
  page.on('console', (msg) => {
    const text = msg.text();
    // uvu writes a test's dot as a fragment (console.log in a page): keep a suite's dots on one line.
    process.stdout.write(text.includes('• ') ? text : `${text}\n`);
    if (/Duration:/.test(text)) finished();
  });
  page.on('pageerror', (e) => {
    console.log(`page error: ${e.message}`);
    finished();
  });
  await page.goto(`${server.url}/.build/browser/suite.html`);
  const timer = setTimeout(() => {
    console.log(`browser suite: no result after ${TIMEOUT_MS / 60000} minutes`);
    finished();
  }, TIMEOUT_MS);
  await done;
  clearTimeout(timer);
  const counts = await page.evaluate(() => (globalThis as { __counts?: { passed: number; failed: number; skipped: string[] } }).__counts ?? null);
  if (!counts) console.log('browser suite: the page never reported its counts (see the errors above)');
  else {
    for (const line of counts.skipped) console.log(`skipped: ${line}`);
    console.log(`browser: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped.length} skipped in ${((Date.now() - began) / 1000).toFixed(0)} s`);
    code = counts.failed === 0 && counts.passed > 0 ? 0 : 1;
  }
} finally {
  await browser.close();
  server.close();
}
process.exit(code);
