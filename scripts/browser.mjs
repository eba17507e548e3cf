// What the browser suite, the demo and its end-to-end test share: bundling a TypeScript entry for the page,
// serving the repository on localhost, and headless Chromium with WebGPU (Debian's chromium, driven by
// playwright-core; no browser is ever downloaded).
import { build } from 'esbuild';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize, resolve } from 'node:path';

export const ROOT = resolve(new URL('..', import.meta.url).pathname);

/** Bundles `entry` for the browser into `outfile` (the Node-only `webgpu` import is left out: pages use navigator.gpu). */
export async function bundle(entry, outfile) {
  await build({
    entryPoints: [join(ROOT, entry)],
    outfile: join(ROOT, outfile),
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    external: ['webgpu'],
    sourcemap: 'inline',
    logLevel: 'warning',
  });
}

const TYPES = { '.html': 'text/html', '.mjs': 'text/javascript', '.js': 'text/javascript', '.json': 'application/json', '.gz': 'application/gzip', '.png': 'image/png', '.css': 'text/css', '.svg': 'image/svg+xml' };

/**
 * Serves files under `root` (GET only, no path outside it) on 127.0.0.1; `routes` maps exact URL paths to
 * files elsewhere (e.g. a run folder). Resolves to { url, close }.
 */
export function serve(root = ROOT, { port = 0, routes = {} } = {}) {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const file = routes[path] ?? normalize(join(root, path === '/' ? 'index.html' : path));
    if (req.method !== 'GET' || (!routes[path] && !file.startsWith(root)) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end(`${path}: not found`);
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
    createReadStream(file).pipe(res);
  });
  return new Promise((ok) => server.listen(port, '127.0.0.1', () => ok({ url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() })));
}

/** Flags that give headless Chromium a WebGPU adapter here (SwiftShader) and keep it off the network. */
export const CHROMIUM_ARGS = ['--enable-unsafe-webgpu', '--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Headless Debian chromium through playwright-core; a clear error when either is missing. */
export async function launchChromium() {
  const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
  if (!existsSync(executablePath)) throw new Error(`${executablePath} not found: install Debian's chromium (\`npm run setup\` does) or set CHROMIUM`);
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
}
