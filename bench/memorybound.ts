// Memory-bound kernels: softmax and layer norm over [4096, 1024] rows and an elementwise add over 16M
// floats. Rates are GB/s of compulsory traffic (each input read once, each output written once). Where the
// device has shader-f16, softmax and layer norm also run on f16 rows (half the bytes; statistics in f32).
import * as T from '../ops/index.ts';
import * as R from '../kernels/reference.ts';
import { rowWalk, type RowKernel } from '../kernels/policy.ts';

/** How our side is named in the results: the walk this device takes over these rows (kernels/policy.ts). */
function walkName(kernel: RowKernel, D: number): string {
  const { path, lanes } = rowWalk(kernel, D, 4);
  return path === 'thread' ? 'ours (thread per row)' : `ours (${lanes}-lane subgroup per row${path === 'registers' ? ', in registers' : ''})`;
}
import { loadTfjs, timeAgainstPeer, timeOurs, validate, type Result, type Tf } from './harness.ts';

interface Case {
  kernel: string;
  /** How our side is named in the results (the variant this device runs). */
  impl?: string;
  shape: number[];
  bytes: number;
  ours: (x: T.Tensor) => T.Tensor;
  tfjs: (tf: Tf, x: import('@tensorflow/tfjs-core').Tensor) => import('@tensorflow/tfjs-core').Tensor;
  /** Sampled reference check of ours(x) given the host input. */
  check: (x: Float32Array, y: Float32Array) => { got: number; want: number }[];
  /** Also run on f16 rows (the bytes halve; the check runs on the rounded input). */
  half?: boolean;
}

const rowsOf = (D: number, rows: number[]) => (x: Float32Array) => rows.map((r) => new R.Nd([1, D], Float64Array.from(x.subarray(r * D, (r + 1) * D))));
const sampleRows = [0, 1, 777, 4095];

export async function benchMemoryBound({ quick, peer }: { quick: boolean; peer: boolean }): Promise<Result[]> {
  const [rows, D] = [4096, 1024];
  const n = quick ? 1 << 22 : 1 << 24;
  const w = T.keep(T.randNormal([D]));
  const bias = T.keep(T.randNormal([D]));
  const [hw, hb] = [await w.data(), await bias.data()];
  const cases: Case[] = [
    {
      kernel: 'softmax',
      impl: walkName('softmax', D),
      shape: [rows, D],
      bytes: 2 * rows * D * 4,
      ours: (x) => T.softmax(x),
      tfjs: (tf, x) => tf.softmax(x),
      check: (x, y) => rowsOf(D, sampleRows)(x).flatMap((row, k) => Array.from(R.softmax(row).data, (want, j) => ({ got: y[sampleRows[k] * D + j], want }))),
      half: true,
    },
    {
      kernel: 'layerNorm',
      impl: walkName('layerNorm', D),
      shape: [rows, D],
      bytes: 2 * rows * D * 4,
      ours: (x) => T.layerNorm(x, w, bias),
      tfjs: (tf, x) => {
        // tfjs has no fused layer norm; this is how its users write one.
        const { mean, variance } = tf.moments(x, -1, true);
        return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-5))), tf.tensor1d(hw as Float32Array)), tf.tensor1d(hb as Float32Array));
      },
      check: (x, y) => {
        const [wn, bn] = [R.Nd.from(hw, [D]), R.Nd.from(hb, [D])];
        return rowsOf(D, sampleRows)(x).flatMap((row, k) =>
          Array.from(R.layerNorm(row, wn, bn, 1e-5).data, (want, j) => ({ got: y[sampleRows[k] * D + j], want })),
        );
      },
      half: true,
    },
    {
      kernel: 'add',
      shape: [n],
      bytes: 3 * n * 4,
      ours: (x) => T.add(x, x),
      tfjs: (tf, x) => tf.add(x, x),
      check: (x, y) => Array.from({ length: 256 }, (_, s) => (s * 65537) % n).map((i) => ({ got: y[i], want: 2 * x[i] })),
    },
  ];
  const tf = peer ? await loadTfjs() : null;
  const results: Result[] = [];
  for (const c of cases) {
    const x = T.keep(T.randNormal(c.shape));
    const hx = (await x.data()) as Float32Array;
    const y = c.ours(x);
    validate(`${c.kernel} [${c.shape}]`, c.check(hx, (await y.data()) as Float32Array), 1e-5);
    y.dispose();
    const label = `[${c.shape.join(',')}]`;
    if (tf) {
      // Interleaved with the peer: the ratio is the median of per-round ratios, with its range.
      const tx = tf.tensor(hx, c.shape);
      const { ms, gpuMs, peerMs, vsPeer } = await timeAgainstPeer(() => c.ours(x), tf, () => tf.tidy(() => c.tfjs(tf, tx)), { inner: 10, reps: 9 });
      results.push({ kernel: c.kernel, shape: label, impl: c.impl ?? 'ours', ms, gpuMs, rate: c.bytes / ms / 1e6, unit: 'GB/s', vsPeer });
      results.push({ kernel: c.kernel, shape: label, impl: 'tfjs-webgpu', ms: peerMs, gpuMs: null, rate: c.bytes / peerMs / 1e6, unit: 'GB/s' });
      tx.dispose();
    } else {
      const { ms, gpuMs } = await timeOurs(() => c.ours(x), { inner: 5 });
      results.push({ kernel: c.kernel, shape: label, impl: c.impl ?? 'ours', ms, gpuMs, rate: c.bytes / ms / 1e6, unit: 'GB/s' });
    }
    if (c.half && T.gpu().hasFeature('shader-f16')) {
      const x16 = T.keep(T.cast(x, 'f16'));
      const y16 = c.ours(x16);
      // Output rounded once to f16: 2⁻¹¹ relative, and layer norm's outputs reach ~4.
      validate(`${c.kernel} f16 [${c.shape}]`, c.check((await x16.data()) as Float32Array, (await y16.data()) as Float32Array), 4e-3);
      y16.dispose();
      const half = await timeOurs(() => c.ours(x16), { inner: 5 });
      results.push({
        kernel: c.kernel,
        shape: label,
        impl: `${c.impl ?? 'ours'}, f16`,
        ms: half.ms,
        gpuMs: half.gpuMs,
        rate: c.bytes / 2 / half.ms / 1e6,
        unit: 'GB/s',
      });
      x16.dispose();
    }
    x.dispose();
  }
  w.dispose();
  bias.dispose();
  return results;
}
