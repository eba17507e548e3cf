// Runs a TypeScript entry point: bundles it with esbuild (npm packages stay external) into .build/ and
// executes it with node, passing node flags given before the entry and script arguments after it.
//   node scripts/run.mjs [--node-flag ...] entry.ts [args ...]
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { basename, join } from 'node:path';

const argv = process.argv.slice(2);
const entryAt = argv.findIndex((a) => a.endsWith('.ts'));
if (entryAt < 0) {
  console.error('usage: node scripts/run.mjs [node flags] entry.ts [args]');
  process.exit(2);
}
const entry = argv[entryAt];
const outfile = join('.build', basename(entry).replace(/\.ts$/, '.mjs'));
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
if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = '/tmp';
const result = spawnSync(process.execPath, ['--enable-source-maps', ...argv.slice(0, entryAt), outfile, ...argv.slice(entryAt + 1)], {
  stdio: 'inherit',
});
process.exit(result.status ?? 1);
