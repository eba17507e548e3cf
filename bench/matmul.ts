// Matmul benchmark: every kernel version / tile on square and ViT-B/32 transformer shapes, validated on
// sampled outputs against float64 dot products, with tfjs-webgpu on the same shapes; where the device has
// shader-f16, T.matmul's choice again on f16 copies (f32 accumulation), validated on the rounded inputs.
import * as T from '../ops/index.ts';
import { MATMUL_VARIANTS, matmulRaw, type MatmulConfig } from '../kernels/matmul.ts';
import { matmulChoice, matmulUnsupported } from '../kernels/policy.ts';
import { loadTfjs, timeOurs, timeOursInterleaved, timeTfjs, validate, type Result } from './harness.ts';

/** [M, K, N] and a label. ViT-B/32 at batch 8: 8 · 50 tokens, width 768, MLP 3072, qkv 2304. */
export function matmulShapes(quick: boolean): [string, number, number, number][] {
  const square: [string, number, number, number][] = [256, 512, 1024, 2048].map((n) => [`${n}²`, n, n, n]);
  const vit: [string, number, number, number][] = [
    ['ViT-B/32 qkv [400,768]×[768,2304]', 400, 768, 2304],
    ['ViT-B/32 fc [400,768]×[768,3072]', 400, 768, 3072],
    ['ViT-B/32 proj [400,3072]×[3072,768]', 400, 3072, 768],
  ];
  return quick ? [square[0], square[2], vit[1]] : [...square, ...vit];
}

const configName = (c: MatmulConfig) =>
  c.version === 'v1'
    ? 'v1'
    : c.version === 'v2'
      ? `v2 ${c.tm}x${c.tn}`
      : c.version === 'v3'
        ? `v3 8x${c.tn}/lane`
        : `v4 ${c.tm}x${c.tn} tiled`;

export async function benchMatmul({ quick, peer, log }: { quick: boolean; peer: boolean; log: (line: string) => void }): Promise<Result[]> {
  const results: Result[] = [];
  // A variant this device cannot run is reported as skipped, never timed as another one.
  for (const config of MATMUL_VARIANTS) {
    const reason = matmulUnsupported(config);
    if (reason) log(`matmul ${configName(config)}: skipped (${reason})`);
  }
  const tf = peer ? await loadTfjs() : null;
  for (const [label, M, K, N] of matmulShapes(quick)) {
    const a = T.keep(T.randNormal([M, K]));
    const b = T.keep(T.randNormal([K, N]));
    const [ha, hb] = [await a.data(), await b.data()];
    const flops = 2 * M * N * K;
    const inner = flops > 4e9 ? 2 : 5;
    // Every variant this device runs, validated, then timed in interleaved rounds together with what T.matmul
    // runs here, so the choice is compared with the best variant under the same conditions.
    const timed = MATMUL_VARIANTS.filter((config) => !((config.version === 'v1' && flops > 3e9) || matmulUnsupported(config))); // v1 takes minutes there
    for (const config of timed) {
      const out = matmulRaw(a, b, {}, config);
      const got = await out.data();
      out.dispose();
      const samples = Array.from({ length: 64 }, (_, s) => {
        const i = (s * 7919) % M;
        const j = (s * 104729) % N;
        let want = 0;
        for (let k = 0; k < K; k++) want += ha[i * K + k] * hb[k * N + j];
        return { got: got[i * N + j], want };
      });
      validate(`matmul ${configName(config)} ${label}`, samples, 1e-4 * Math.sqrt(K));
    }
    const chosen = matmulChoice(M, N, K);
    const times = await timeOursInterleaved([...timed.map((config) => () => matmulRaw(a, b, {}, config)), () => T.matmul(a, b)], { inner });
    for (const [i, config] of timed.entries()) {
      results.push({ kernel: 'matmul', shape: label, impl: `ours ${configName(config)}`, ...times[i], rate: flops / times[i].ms / 1e6, unit: 'GFLOP/s' });
    }
    // What T.matmul runs at this shape (kernels/policy.ts: a tuned shape, its bucket, or the default) against the
    // best variant of this run; on a tuned shape it should be within 10%.
    const picked = times[timed.length];
    const best = Math.min(...times.slice(0, timed.length).map((t) => t.ms));
    const ofBest = best / picked.ms;
    const why = chosen.source === 'default' ? 'the default' : `${chosen.source} ${chosen.key}`;
    results.push({
      kernel: 'matmul',
      shape: label,
      impl: `ours → T.matmul picks ${configName(chosen.config)} (${why}; ${(100 * ofBest).toFixed(0)}% of the best variant's rate)`,
      ...picked,
      rate: flops / picked.ms / 1e6,
      unit: 'GFLOP/s',
    });
    if (chosen.source === 'tuned shape' && ofBest < 0.9)
      log(`matmul ${label}: T.matmul's tuned choice runs at ${(100 * ofBest).toFixed(0)}% of the best variant in this run`);
    if (T.gpu().hasFeature('shader-f16')) {
      const [a16, b16] = [a, b].map((t) => T.keep(T.cast(t, 'f16')));
      const [ra, rb] = [await a16.data(), await b16.data()];
      const out = T.matmul(a16, b16);
      const got = await out.data();
      out.dispose();
      // Against float64 products of the rounded inputs: only the f32 accumulation and the final rounding differ.
      const samples = Array.from({ length: 64 }, (_, s) => {
        const [i, j] = [(s * 7919) % M, (s * 104729) % N];
        let want = 0;
        for (let k = 0; k < K; k++) want += ra[i * K + k] * rb[k * N + j];
        return { got: got[i * N + j], want };
      });
      validate(`matmul f16 ${label}`, samples, 2e-3 * Math.sqrt(K));
      const { ms, gpuMs } = await timeOurs(() => T.matmul(a16, b16), { inner });
      results.push({
        kernel: 'matmul',
        shape: label,
        impl: `ours → T.matmul ${configName(chosen.config)}, f16`,
        ms,
        gpuMs,
        rate: flops / ms / 1e6,
        unit: 'GFLOP/s',
      });
      a16.dispose();
      b16.dispose();
    }
    if (tf) {
      const [ta, tb] = [tf.tensor2d(ha as Float32Array, [M, K]), tf.tensor2d(hb as Float32Array, [K, N])];
      const ms = await timeTfjs(tf, () => tf.matMul(ta, tb), { inner });
      results.push({ kernel: 'matmul', shape: label, impl: 'tfjs-webgpu', ms, gpuMs: null, rate: flops / ms / 1e6, unit: 'GFLOP/s' });
      ta.dispose();
      tb.dispose();
    }
    a.dispose();
    b.dispose();
  }
  return results;
}
