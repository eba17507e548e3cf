// `npm run build` (and `prepack`): the package in dist/ — tsc emits ESM JavaScript and declarations for the
// public entries (tsconfig.build.json), CLIP's vocabulary goes beside the tokenizer that reads it (and the
// benchmark's PyTorch script beside the benchmark), and the demo page is bundled once so `clipgpu demo` serves it
// without a bundler.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';

rmSync('dist', { recursive: true, force: true });
try {
  execFileSync(process.execPath, [createRequire(import.meta.url).resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
} catch {
  process.exit(1); // tsc has printed the errors
}
cpSync('clip/assets', 'dist/clip/assets', { recursive: true });
copyFileSync('bench/torch_clip_step.py', 'dist/bench/torch_clip_step.py'); // the training-step benchmark's PyTorch peer
mkdirSync('dist/examples/demo/page', { recursive: true });
await build({
  entryPoints: ['examples/demo/page.ts'],
  outfile: 'dist/examples/demo/page/page.mjs',
  bundle: true,
  platform: 'browser',
  format: 'esm',
  target: 'es2022',
  external: ['webgpu'],
  minify: true,
  logLevel: 'warning',
});
copyFileSync('examples/demo/index.html', 'dist/examples/demo/page/index.html');
chmodSync('dist/bin/clipgpu.js', 0o755);
