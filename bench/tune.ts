// `npm run tune [-- --show]`: measures which kernel variants are fastest on this adapter, per shape bucket, and
// caches the choices (kernels/io/tuning.ts) for every later run on it; --show prints the cached choices.
import * as T from '../ops/index.ts';
import { cachedTuning, tuneAndSave, tuningPath } from '../kernels/io/tuning.ts';
import { variantName } from '../kernels/tune.ts';

/** The command line, for --help. */
export const USAGE = 'usage: clipgpu tune [--show]   (measures this adapter\'s kernel variants and caches the choices; --show lists them)';

/** `clipgpu tune [--show]`; `argv` holds the flags only. */
export async function main(argv: string[]): Promise<void> {
  await T.init();
  console.log(`adapter: ${T.gpu().name}`);
  if (argv.includes('--show')) {
    const tuning = cachedTuning();
    if (!tuning) console.log(`no choices cached for this adapter in ${tuningPath()}: run npm run tune`);
    else {
      for (const [bucket, t] of Object.entries(tuning.matmul)) console.log(`matmul ${bucket}: ${variantName(t.choice)}  (${t.rates.map((r) => `${variantName(r.config)} ${r.gflops.toFixed(1)}`).join(', ')} GFLOP/s)`);
      for (const [kernel, t] of Object.entries(tuning.rows ?? {})) console.log(`${kernel}: ${t.choice} per row  (${t.rates.map((r) => `${r.path} ${r.gbps.toFixed(2)}`).join(', ')} GB/s)`);
      for (const [kind, t] of Object.entries(tuning.attention ?? {})) console.log(`attention ${kind}, 64-wide heads: ${t.fused ? 'fused' : 'batched matmuls'}  (${t.rates.map((r) => `${r.fused ? 'fused' : 'matmuls'} ${r.gflops.toFixed(2)}`).join(', ')} GFLOP/s)`);
    }
  } else {
    const began = performance.now();
    await tuneAndSave(console.log);
    console.log(`tuned in ${((performance.now() - began) / 1000).toFixed(1)} s; choices cached in ${tuningPath()}`);
  }
  T.closeGpu();
}
