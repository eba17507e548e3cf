// nn kernels: conv2d on ResNet-50 stem and bottleneck shapes (GFLOP/s, with tfjs-webgpu's conv2d in the same
// run), training batch norm and the fused AdamW update over 10M parameters (GB/s).
import * as T from '../ops/index.ts';
import * as R from '../kernels/reference.ts';
import { adamwUpdate } from '../kernels/optimizer.ts';
import { loadTfjs, timeOurs, timeTfjs, validate, type Result } from './harness.ts';

/** [label, N, C, H, W, O, k, stride, padding] */
const CONVS: [string, number, number, number, number, number, number, number, number][] = [
  ['ResNet-50 stem 7×7/2 [2,3,224,224]→64', 2, 3, 224, 224, 64, 7, 2, 3],
  ['ResNet-50 bottleneck 1×1 [2,256,56,56]→64', 2, 256, 56, 56, 64, 1, 1, 0],
  ['ResNet-50 bottleneck 3×3 [2,64,56,56]→64', 2, 64, 56, 56, 64, 3, 1, 1],
];

export async function benchNn({ quick, peer }: { quick: boolean; peer: boolean }): Promise<Result[]> {
  const results: Result[] = [];
  const tf = peer ? await loadTfjs() : null;
  for (const [label, N, C, H, W, O, k, stride, padding] of quick ? CONVS.slice(1, 2) : CONVS) {
    const x = T.keep(T.randNormal([N, C, H, W]));
    const w = T.keep(T.randNormal([O, C, k, k], 0, 0.1));
    const [hx, hw] = [await x.data(), await w.data()];
    const y = T.conv2d(x, w, { stride, padding });
    const got = await y.data();
    const [Ho, Wo] = [y.shape[2], y.shape[3]];
    y.dispose();
    // Validate sampled outputs against direct float64 sums.
    const samples = Array.from({ length: 32 }, (_, s) => {
      const [n, o, oh, ow] = [s % N, (s * 7) % O, (s * 13) % Ho, (s * 29) % Wo];
      let want = 0;
      for (let c = 0; c < C; c++)
        for (let i = 0; i < k; i++)
          for (let j = 0; j < k; j++) {
            const [h, ww] = [oh * stride - padding + i, ow * stride - padding + j];
            if (h >= 0 && h < H && ww >= 0 && ww < W) want += hx[((n * C + c) * H + h) * W + ww] * hw[((o * C + c) * k + i) * k + j];
          }
      return { got: got[((n * O + o) * Ho + oh) * Wo + ow], want };
    });
    validate(`conv2d ${label}`, samples, 1e-4 * Math.sqrt(C * k * k));
    const flops = 2 * N * O * Ho * Wo * C * k * k;
    const { ms, gpuMs } = await timeOurs(() => T.conv2d(x, w, { stride, padding }), { inner: 2, reps: 3 });
    results.push({ kernel: 'conv2d', shape: label, impl: 'ours (NCHW)', ms, gpuMs, rate: flops / ms / 1e6, unit: 'GFLOP/s' });
    if (tf) {
      // tfjs's native layout is NHWC with [k, k, C, O] filters.
      const tx = tf.transpose(tf.tensor4d(hx as Float32Array, [N, C, H, W]), [0, 2, 3, 1]);
      const tw = tf.transpose(tf.tensor4d(hw as Float32Array, [O, C, k, k]), [2, 3, 1, 0]);
      const pad: [[number, number], [number, number], [number, number], [number, number]] = [[0, 0], [padding, padding], [padding, padding], [0, 0]];
      const tms = await timeTfjs(tf, () => tf.conv2d(tx as never, tw as never, stride, padding ? pad : 'valid'), { inner: 2, reps: 3 });
      results.push({ kernel: 'conv2d', shape: label, impl: 'tfjs-webgpu', ms: tms, gpuMs: null, rate: flops / tms / 1e6, unit: 'GFLOP/s' });
      tx.dispose();
      tw.dispose();
    }
    x.dispose();
    w.dispose();
  }

  // Training batch norm over [8, 64, 56, 56]: statistics read x twice, apply reads x and writes y.
  {
    const shape = quick ? [2, 64, 56, 56] : [8, 64, 56, 56];
    const x = T.keep(T.randNormal(shape));
    const [g, b] = [T.keep(T.randNormal([64])), T.keep(T.randNormal([64]))];
    const out = T.batchNorm2dTrain(x, g, b);
    const hx = R.Nd.from(await x.data(), shape);
    const full = R.batchNorm2d(hx, R.Nd.from(await g.data(), [64]), R.Nd.from(await b.data(), [64]), 1e-5);
    const y = await out.y.data();
    validate('batchNorm2d', Array.from({ length: 64 }, (_, s) => (s * 40503) % y.length).map((i) => ({ got: y[i], want: full.data[i] })), 1e-4);
    for (const t of [out.y, out.mean, out.variance]) t.dispose();
    const bytes = 2 * x.size * 4;
    const { ms, gpuMs } = await timeOurs(() => {
      const r = T.batchNorm2dTrain(x, g, b);
      r.mean.dispose();
      r.variance.dispose();
      return r.y;
    });
    results.push({ kernel: 'batchNorm2d', shape: `[${shape}] train`, impl: 'ours', ms, gpuMs, rate: bytes / ms / 1e6, unit: 'GB/s' });
    for (const t of [x, g, b]) t.dispose();
  }

  // Fused AdamW over 10M parameters: reads p, g, m, v and writes p, m, v.
  {
    const n = quick ? 1_000_000 : 10_000_000;
    const [p, gr, m, v] = [T.randNormal([n]), T.randNormal([n]), T.zeros([n]), T.zeros([n])].map((t) => T.keep(t));
    const [p0, g0] = [await p.data(), await gr.data()];
    const h = { lr: 1e-3, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.2, step: 1 };
    adamwUpdate(p, gr, m, v, h);
    const p1 = await p.data();
    validate('adamw', Array.from({ length: 64 }, (_, s) => (s * 155921) % n).map((i) => {
      const mi = (1 - h.beta1) * g0[i];
      const vi = (1 - h.beta2) * g0[i] ** 2;
      return { got: p1[i], want: p0[i] * (1 - h.lr * h.weightDecay) - (h.lr / (1 - h.beta1)) * (mi / (Math.sqrt(vi) / Math.sqrt(1 - h.beta2) + h.eps)) };
    }), 1e-5);
    const { ms, gpuMs } = await timeOurs(() => {
      adamwUpdate(p, gr, m, v, { ...h, step: 2 });
      return T.zeros([1]);
    });
    results.push({ kernel: 'adamw', shape: `${n / 1e6}M params`, impl: 'ours (fused)', ms, gpuMs, rate: (7 * n * 4) / ms / 1e6, unit: 'GB/s' });
    for (const t of [p, gr, m, v]) t.dispose();
  }
  return results;
}
