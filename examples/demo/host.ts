// Node-side helpers for pages (the demo, the browser suite and their tests): bundling a TypeScript entry for
// the page, serving the repository on localhost, and headless Chromium with WebGPU (Debian's chromium driven by
// playwright-core; no browser is ever downloaded).
import { copyFileSync, createReadStream, existsSync, realpathSync, statSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { DEFAULT_VOCAB } from '../../clip/tokenizer.ts';

/** The repository (tools run from its root). */
export const ROOT = resolve('.');

/** Bundles `entry` for the browser into `outfile` (the Node-only `webgpu` import is left out: pages use navigator.gpu). */
export async function bundle(entry: string, outfile: string): Promise<void> {
  const { build } = await import('esbuild'); // a development tool: an installed package serves its prebuilt page
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

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.mjs': 'text/javascript',
  '.js': 'text/javascript',
  '.json': 'application/json',
  '.gz': 'application/gzip',
  '.png': 'image/png',
  '.css': 'text/css',
  '.svg': 'image/svg+xml',
};

export interface Server {
  url: string;
  close(): void;
}

/** Host names a page on this machine is reached by; any other Host header is a DNS-rebinding attempt. */
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * Serves files under `root` on 127.0.0.1 (GET only); `routes` maps URL paths to files elsewhere (a run folder
 * the demo exposes). `root` is a jail: a file is served only when its real path (symlinks resolved) lies inside
 * root's real path, separator included (so a sibling `root-other/` is outside); a request naming another host
 * (DNS rebinding: a remote page whose name resolves here) is refused; a malformed URL is answered 400.
 */
export function serve({ root = ROOT, port = 0, routes = {} }: { root?: string; port?: number; routes?: Record<string, string> } = {}): Promise<Server> {
  const jail = realpathSync(root);
  const answer = (res: ServerResponse, status: number, text: string) => res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' }).end(`${text}\n`);
  const server = createServer((req, res) => {
    const host = /^(\[[^\]]*\]|[^:]*)(:\d+)?$/.exec(req.headers.host ?? '')?.[1].toLowerCase();
    if (!host || !LOOPBACK_HOSTS.has(host))
      return answer(
        res,
        403,
        `Host '${(req.headers.host ?? '').slice(0, 100)}' is not this machine: open the page as 127.0.0.1 or localhost`,
      );
    if (req.method !== 'GET') return answer(res, 405, `${req.method}: only GET is served`);
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    } catch {
      return answer(res, 400, 'malformed URL');
    }
    const routed = routes[path];
    let file: string;
    try {
      file = routed ?? realpathSync(join(jail, path.endsWith('/') ? `${path}index.html` : path));
      if (!routed && !file.startsWith(jail + sep)) throw new Error('outside');
      if (!statSync(file).isFile()) throw new Error('not a file');
    } catch {
      return answer(res, 404, `${path.slice(0, 200)}: not found`);
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
    createReadStream(file).on('error', () => res.destroy()).pipe(res);
  });
  return new Promise((ok, fail) => {
    server.once('error', (e) => fail(new Error(`cannot serve on port ${port}: ${e.message}`)));
    server.listen(port, '127.0.0.1', () => ok({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() }));
  });
}

/** Flags that give headless Chromium a WebGPU adapter here (SwiftShader) and keep it off the network. */
export const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu',
  '--no-sandbox',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Headless Debian chromium through playwright-core (`args`: its flags); a clear error when it is missing. */
export async function launchChromium(args = CHROMIUM_ARGS): Promise<Browser> {
  const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
  if (!existsSync(executablePath)) throw new Error(`${executablePath} not found: install Debian's chromium (\`npm run setup\` does) or set CHROMIUM`);
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath, headless: true, args });
}

/** The page `npm run build` bundles beside this module, for an installed package (which has no sources). */
const PREBUILT_PAGE = fileURLToPath(new URL('./page/', import.meta.url));

/**
 * Serves the demo page — in the repository bundled from its sources into .build/demo on every start, in an
 * installed package the prebuilt one; `run` is a training output folder whose model.safetensors and
 * vocab.txt.gz the page can load as /run/….
 */
export async function startDemo({ run, port = 0 }: { run?: string; port?: number } = {}): Promise<Server> {
  let root = PREBUILT_PAGE;
  if (existsSync(join(ROOT, 'examples/demo/page.ts'))) {
    root = join(ROOT, '.build/demo');
    await bundle('examples/demo/page.ts', '.build/demo/page.mjs');
    copyFileSync(join(ROOT, 'examples/demo/index.html'), join(root, 'index.html'));
  }
  const routes: Record<string, string> = { '/clip/assets/bpe_simple_vocab_16e6.txt.gz': fileURLToPath(DEFAULT_VOCAB) };
  if (run) {
    const weights = join(resolve(run), 'model.safetensors');
    if (!existsSync(weights)) throw new Error(`--run ${run}: no model.safetensors there (train one with \`npm run train\`)`);
    routes['/run/model.safetensors'] = weights;
    if (existsSync(join(resolve(run), 'vocab.txt.gz'))) routes['/run/vocab.txt.gz'] = join(resolve(run), 'vocab.txt.gz');
  }
  return serve({ root, port, routes });
}
