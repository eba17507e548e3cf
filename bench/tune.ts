// `npm run tune [-- --show | --explain MxKxN …]`: measures which kernel variants are fastest on this adapter, per
// shape bucket and on the exact shapes of kernels/tune.ts TUNED_SHAPES, and caches the choices
// (kernels/io/tuning.ts) for every later run on it; --show prints the cached table with each candidate's median
// and spread; --explain says which matmul kernels/policy.ts runs for a product, why, and the kernel's name (the
// file CLIPGPU_DUMP_WGSL=<dir> writes for it).
import * as T from '../ops/index.ts';
import { cachedTuning, tuneAndSave, tuningPath } from '../kernels/io/tuning.ts';
import { explainMatmul, useTuningTable, variantName, type Timing } from '../kernels/policy.ts';

/** The command line, for --help. */
export const USAGE =
  'usage: clipgpu tune [--show] [--explain MxKxN[:layout] …]   (measures this adapter\'s kernel variants and caches the choices; ' +
  '--show lists them; --explain 400x768x2304 says which matmul runs for [400×768]·[768×2304] and why)';

/** "12.3 GFLOP/s (±4%)": a rate and the half interquartile range of its timing, relative to the median. */
const withSpread = (rate: string, timing?: Timing) => (timing ? `${rate} (±${((50 * (timing.q75 - timing.q25)) / timing.ms).toFixed(0)}%)` : rate);

/** Parses "MxKxN" or "MxKxN:layout" (a product [M×K]·[K×N]); null when malformed. */
function parseProduct(text: string): { M: number; K: number; N: number; layout: 'nn' | 'nt' | 'tn' | 'tt' } | null {
  const m = /^(\d+)x(\d+)x(\d+)(?::(nn|nt|tn|tt))?$/.exec(text);
  return m ? { M: +m[1], K: +m[2], N: +m[3], layout: (m[4] ?? 'nn') as 'nn' } : null;
}

/** `clipgpu tune [--show]`; `argv` holds the flags only. */
export async function main(argv: string[]): Promise<void> {
  // Products to explain are checked before the device opens: a bad one costs nothing (and never starts a tune).
  if (argv.at(-1) === '--explain') throw new Error('--explain: give a product MxKxN[:nn|nt|tn|tt] (e.g. 400x768x2304)');
  const explain = argv.flatMap((a, i) => (argv[i - 1] === '--explain' ? [a] : [])).map((text) => {
    const product = parseProduct(text);
    if (!product) throw new Error(`--explain: '${text}' is not a product MxKxN[:nn|nt|tn|tt] (e.g. 400x768x2304)`);
    return product;
  });
  await T.init();
  console.log(`adapter: ${T.gpu().name}`);
  if (explain.length) {
    const tuning = cachedTuning();
    useTuningTable(tuning);
    console.log(tuning ? `tuning table: ${tuningPath()}` : `no tuning table for this adapter (${tuningPath()}): the defaults apply`);
    for (const p of explain) console.log(explainMatmul(p.M, p.N, p.K, p.layout));
    console.log('f16 and mixed operands take the same variant (policy.ts matmulChoice); CLIPGPU_DUMP_WGSL=<dir> writes the shaders that run.');
  } else if (argv.includes('--show')) {
    const tuning = cachedTuning();
    if (!tuning) console.log(`no choices cached for this adapter in ${tuningPath()}: run npm run tune`);
    else {
      for (const [key, t] of Object.entries(tuning.matmul)) {
        const rates = t.rates.map((r) => withSpread(`${variantName(r.config)} ${r.gflops.toFixed(1)}`, r.timing)).join(', ');
        console.log(`matmul ${key}: ${variantName(t.choice)}  (${rates} GFLOP/s)`);
      }
      for (const [kernel, t] of Object.entries(tuning.rows ?? {})) {
        console.log(`${kernel}: ${t.choice} per row  (${t.rates.map((r) => withSpread(`${r.path} ${r.gbps.toFixed(2)}`, r.timing)).join(', ')} GB/s)`);
      }
      for (const [kind, t] of Object.entries(tuning.attention ?? {})) {
        const rates = t.rates.map((r) => withSpread(`${r.fused ? 'fused' : 'matmuls'} ${r.gflops.toFixed(2)}`, r.timing)).join(', ');
        console.log(`attention ${kind}, 64-wide heads: ${t.fused ? 'fused' : 'batched matmuls'}  (${rates} GFLOP/s)`);
      }
    }
  } else {
    const began = performance.now();
    await tuneAndSave(console.log);
    console.log(`tuned in ${((performance.now() - began) / 1000).toFixed(1)} s; choices cached in ${tuningPath()}`);
  }
  T.closeGpu();
}
