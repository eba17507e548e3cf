// The consumer test: the package as a user gets it. `npm pack` (which builds dist/), the tarball installed into
// an empty project outside the repository, then, there, through the public entries only:
//   - the `clipgpu` command: --help, a one-line error, a 3-step training run, and a run stopped by a group kill;
//   - a Node ESM program (app/node.mjs) that trains an MLP and runs CLIP zero-shot on that run's checkpoint;
//   - a module outside `exports` does not resolve;
//   - tsc type-checks a strict TypeScript consumer (app/typed.ts) against the package's declarations;
//   - esbuild bundles the same program for the browser (app/page.mjs: no Node API, no `webgpu`) and headless
//     Chromium runs it.
// Ends with `consumer: N passed` or the first failure (exit 1). The registry is needed only for packages the
// npm cache lacks.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { ROOT, launchChromium, serve } from '../../examples/demo/host.ts';

const began = Date.now();
const work = mkdtempSync(join(tmpdir(), 'clipgpu-consumer-'));
// Tuning takes minutes on a new adapter and is not what is tested here.
const env = { ...process.env, CLIPGPU_TUNE: 'off' };
let passed = 0;

/** Runs a command in the consumer project; fails with its output unless it exits with `code`. */
function run(command: string, args: string[], { code = 0, ...options }: SpawnSyncOptions & { code?: number } = {}): { stdout: string; stderr: string } {
  const result = spawnSync(command, args, { cwd: work, env, encoding: 'utf8', ...options });
  const out = { stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? '') };
  assert.equal(result.status, code, `${command} ${args.join(' ')} exited ${result.status ?? result.signal}, expected ${code}:\n${out.stdout}${out.stderr}`);
  return out;
}

async function check(name: string, body: () => unknown): Promise<void> {
  const t0 = Date.now();
  await body();
  passed++;
  console.log(`consumer: ok  ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}

let code = 1;
try {
  await check('npm pack, then install the tarball into an empty project', () => {
    const packed = run('npm', ['pack', '--pack-destination', work, '--silent'], { cwd: ROOT }).stdout.trim().split('\n').pop()!;
    writeFileSync(join(work, 'package.json'), `${JSON.stringify({ name: 'consumer', private: true, type: 'module' })}\n`);
    run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', join(work, packed)]);
    cpSync(join(ROOT, 'test/consumer/app'), work, { recursive: true });
    const files = run('tar', ['-tzf', packed]).stdout.split('\n');
    assert.ok(files.includes('package/dist/bin/clipgpu.js') && files.includes('package/LICENSE'), 'the tarball holds dist and the license');
    const sources = /^package\/(test|bench|clip|ops|core|nn|kernels|examples|scripts)\//;
    assert.ok(!files.some((f) => sources.test(f)), 'the tarball holds no sources, tests or fixtures');
  });

  await check('npx clipgpu --help, a command\'s --help, --version, and an unknown command in one line', () => {
    assert.match(run('npx', ['--no', '--', 'clipgpu', '--help']).stdout, /train .*\n(.*\n)*.*demo/);
    assert.match(run('npx', ['--no', '--', 'clipgpu', 'train', '--help']).stdout, /--batch-size 64/);
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.equal(run('npx', ['--no', '--', 'clipgpu', '--version']).stdout.trim(), version);
    const unknown = run('npx', ['--no', '--', 'clipgpu', 'trian'], { code: 2 }).stderr.trim();
    assert.equal(unknown.split('\n').length, 1, unknown);
    assert.match(unknown, /unknown command 'trian'/);
  });

  await check('npx clipgpu train --steps 3 writes a run', () => {
    const tiny = ['--batch-size', '8', '--model', 'ViT-tiny', '--vocab-size', '600'];
    run('npx', ['--no', '--', 'clipgpu', 'train', '--steps', '3', ...tiny, '--eval-every', '3', '--out', 'run']);
    for (const file of ['model.safetensors', 'vocab.txt.gz', 'checkpoint.safetensors']) assert.ok(readFileSync(join(work, 'run', file)).length > 0, file);
  });

  await check('npx clipgpu train stopped by a group SIGTERM (timeout, systemd, CI) saves once and releases its lock', async () => {
    const child = spawn('npx', ['--no', '--', 'clipgpu', 'train', '--steps', '5000', '--batch-size', '8', '--model', 'ViT-tiny', '--vocab-size', '600', '--eval-every', '0', '--out', 'stopped'], { cwd: work, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let [stdout, stderr] = ['', ''];
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d) => {
      stdout += d;
      if (/step 10\/5000/.test(stdout) && !child.killed) process.kill(-child.pid!, 'SIGTERM');
    });
    await new Promise((resolve) => child.on('close', resolve));
    assert.match(stderr, /stopped at step \d+ of 5000: saved .*checkpoint\.safetensors/, stdout + stderr);
    assert.doesNotMatch(stderr, /again: exiting without saving/);
    assert.ok(readFileSync(join(work, 'stopped', 'checkpoint.safetensors')).length > 0);
    assert.ok(!existsSync(join(work, 'stopped', '.lock')), 'the lock is released');
  });

  await check('npx clipgpu demo serves the page built at pack time, and the run it is given', async () => {
    const child = spawn('npx', ['--no', '--', 'clipgpu', 'demo', '--port', '0', '--run', 'run'], {
      cwd: work,
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d) => {
          const served = /demo: (http\S+?)\/?\n/.exec((out += d));
          if (served) resolve(served[1]);
        });
        child.on('close', (code) => reject(new Error(`clipgpu demo exited ${code} before serving:\n${out}`)));
      });
      for (const path of ['/', '/page.mjs', '/run/model.safetensors']) assert.equal((await fetch(`${url}${path}`)).status, 200, path);
    } finally {
      process.kill(-child.pid!, 'SIGTERM');
    }
  });

  type Outcome = { mlp: { first: number; last: number }; probabilities: number[]; custom: { y: number[]; grad: number[] } };
  const checkResult = ({ mlp, probabilities, custom }: Outcome, where: string) => {
    assert.deepEqual(custom, { y: [1, 4, 9], grad: [2, 4, 6] }, `${where}: a custom kernel x² and its gradient`);
    assert.ok(mlp.last < mlp.first / 2, `${where}: the MLP's loss falls (${mlp.first} → ${mlp.last})`);
    assert.equal(probabilities.length, 2 * 3, `${where}: 2 images × 3 labels`);
    for (let i = 0; i < 2; i++) {
      const row = probabilities.slice(3 * i, 3 * i + 3);
      assert.ok(row.every((p) => p >= 0 && p <= 1) && Math.abs(row.reduce((a, b) => a + b) - 1) < 1e-4, `${where}: image ${i}'s probabilities ${row}`);
    }
  };

  await check('Node: an MLP trains, CLIP classifies zero-shot and a custom kernel runs, through the public imports', () => {
    const { stdout } = run(process.execPath, ['node.mjs', 'run']);
    checkResult(JSON.parse(stdout.trim().split('\n').pop()!), 'node');
  });

  await check('modules outside `exports` do not resolve', () => {
    for (const path of ['clipgpu/dist/ops/index.js', 'clipgpu/ops/tape', 'clipgpu/kernels/matmul']) {
      const program = `import(${JSON.stringify(path)}).then(() => console.log('reachable'), (e) => console.log(e.code))`;
      const { stdout } = run(process.execPath, ['--input-type=module', '-e', program]);
      assert.equal(stdout.trim(), 'ERR_PACKAGE_PATH_NOT_EXPORTED', path);
    }
  });

  await check('tsc: a strict TypeScript consumer type-checks against the declarations', () => {
    const tsc = createRequire(join(ROOT, 'package.json')).resolve('typescript/bin/tsc');
    run(process.execPath, [tsc, '-p', '.', '--typeRoots', join(ROOT, 'node_modules/@types')]);
  });

  await check('browser: esbuild bundles the program from the installed package and Chromium runs it', async () => {
    const result = await build({
      entryPoints: [join(work, 'page.mjs')],
      outfile: join(work, 'page.bundle.mjs'),
      absWorkingDir: work,
      bundle: true,
      platform: 'browser',
      format: 'esm',
      target: 'es2022',
      metafile: true,
      logLevel: 'error',
    });
    // The package's `browser` map replaces webgpu (Dawn for Node) by an empty module: esbuild lists it as "(disabled):…".
    const bundled = Object.keys(result.metafile.inputs).filter((p) => !p.startsWith('(disabled):'));
    const nodeOnly = bundled.filter((p) => p.startsWith('node:') || p.includes('node_modules/webgpu/'));
    assert.deepEqual(nodeOnly, [], 'no Node module and no webgpu in the bundle');
    const html = '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><script type="module" src="page.bundle.mjs"></script>\n';
    writeFileSync(join(work, 'page.html'), html);
    const server = await serve({ root: work });
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.goto(`${server.url}/page.html`);
      await page.waitForFunction(() => (globalThis as { __result?: unknown }).__result !== undefined, null, { timeout: 120_000 });
      const outcome = await page.evaluate(() => (globalThis as { __result?: unknown }).__result as Outcome & { error?: string });
      assert.ok(!outcome.error, `the page failed: ${outcome.error}`);
      checkResult(outcome, 'browser');
    } finally {
      await browser.close();
      server.close();
    }
  });
  code = 0;
} catch (e) {
  console.log(`consumer: FAILED ${(e as Error).message}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(`consumer: ${passed} passed${code ? ', 1 failed' : ''} in ${((Date.now() - began) / 1000).toFixed(0)} s`);
process.exit(code);
