// Runs a TypeScript entry point: bundles it with esbuild (npm packages stay external) into .build/ and
// executes it with node, passing node flags given before the entry and script arguments after it.
//   node scripts/run.mjs [--node-flag ...] entry.ts [args ...]
import { build } from 'esbuild';
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { basename, join } from 'node:path';

const argv = process.argv.slice(2);
const entryAt = argv.findIndex((a) => a.endsWith('.ts'));
if (entryAt < 0) {
  console.error('usage: node scripts/run.mjs [node flags] entry.ts [args]');
  process.exit(2);
}
const entry = argv[entryAt];
const outfile = join('.build', basename(entry).replace(/\.ts$/, '.mjs'));
try {
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    sourcemap: 'inline',
    logLevel: 'warning',
  });
} catch {
  process.exit(1); // esbuild has printed what it could not build
}
if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = '/tmp';
// Dawn prints two warnings about lavapipe's limits on every start (it caps dynamic buffers per layout at 16,
// which is all we use); they say nothing to a user, so they are dropped from the child's stderr. Everything
// else passes through unchanged, line by line.
const DAWN_NOISE =
  /^Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.$/;
// CLIPGPU_LAUNCHER_PID tells the child that its parent is this launcher, whose exit means the run should stop.
const child = spawn(process.execPath, ['--enable-source-maps', ...argv.slice(0, entryAt), outfile, ...argv.slice(entryAt + 1)], {
  stdio: ['inherit', 'inherit', 'pipe'],
  env: { ...process.env, CLIPGPU_LAUNCHER_PID: String(process.pid) },
});
let pending = '';
child.stderr.setEncoding('utf8');
child.stderr.on('data', (chunk) => {
  const lines = (pending + chunk).split('\n');
  pending = lines.pop();
  const kept = lines.filter((line) => !DAWN_NOISE.test(line));
  if (kept.length) process.stderr.write(`${kept.join('\n')}\n`);
});
// Every stop signal this process gets is passed on, so the child can finish its step and save. A group kill
// (Ctrl-C, `timeout`, `kill -- -PGID`) reaches the child directly too: the trainer takes repeats that close
// together as one request (clip/cli/stop.ts), and other tools stop on the first either way.
let forwarded = false;
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    forwarded = true;
    child.kill(signal);
  });
}
// Started by npm, whose exit (npm killed alone) signals nobody: tell the child, as a closed terminal would —
// unless a stop was already passed on (a group kill takes npm too; a late copy could read as a second stop).
// Started from a shell, a parent that exits is a shell the run was meant to outlive (`&`, disown).
if (process.env.npm_lifecycle_event !== undefined) {
  const parent = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(watch);
    // After this loop turn's poll phase, which runs the handlers of signals that arrived meanwhile.
    setImmediate(() => forwarded || child.kill('SIGHUP'));
  }, 500);
  watch.unref();
}
// Output whose reader has gone (a closed terminal, a dead parent's pipe) must not end this process before the child.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {});
child.on('close', (code, signal) => {
  if (pending && !DAWN_NOISE.test(pending)) process.stderr.write(pending);
  process.exit(code ?? (signal ? 128 + (constants.signals[signal] ?? 1) : 1));
});
