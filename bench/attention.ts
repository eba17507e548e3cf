// Attention: the fused kernels (kernels/attention.ts) against the unfused path they replaced (batched matmuls,
// softmax and permutes, nn/attention.ts attendUnfused) and against tfjs-webgpu's matMul → softmax → matMul,
// on CLIP's shapes. Forward alone, then forward + backward (ours only: tfjs has no fused attention gradient
// to compare with); where the device has shader-f16, also the fused forward on f16 q, k, v. Rates count the
// useful FLOPs of the math (4·D per query–key pair forward; the backward
// recomputes the scores: 4·D in the dQ kernel, 8·D in the dK/dV kernel), the same for every implementation.
import * as T from '../ops/index.ts';
import * as R from '../kernels/reference.ts';
import { attendUnfused, causalMask } from '../nn/attention.ts';
import { loadTfjs, timeOurs, timeTfjs, validate, type Result } from './harness.ts';

/** [label, B, L, heads, headDim, causal] */
const SHAPES: [string, number, number, number, number, boolean][] = [
  ['ViT-B/32 image [8, 50, 12 × 64]', 8, 50, 12, 64, false],
  ['CLIP text, causal [8, 77, 8 × 64]', 8, 77, 8, 64, true],
  ['ViT-scenes training [64, 17, 8 × 8]', 64, 17, 8, 8, false],
  ['16-wide heads [64, 17, 4 × 16]', 64, 17, 4, 16, false],
  ['ViT-scenes text, causal [64, 16, 2 × 32]', 64, 16, 2, 32, true],
  ['CLIP text, causal, 2 heads [8, 77, 2 × 32]', 8, 77, 2, 32, true],
];

export async function benchAttention({ quick, peer }: { quick: boolean; peer: boolean }): Promise<Result[]> {
  const results: Result[] = [];
  const tf = peer ? await loadTfjs() : null;
  for (const [label, B, L, H, D, causal] of quick ? SHAPES.slice(2, 3) : SHAPES) {
    const E = H * D;
    const pairs = B * H * (causal ? (L * (L + 1)) / 2 : L * L);
    const [q, k, v] = [0, 1, 2].map(() => T.param(T.randNormal([B, L, H, D])));
    const g = T.keep(T.randNormal([B, L, H, D]));
    const mask = causal ? T.keep(causalMask(L)) : undefined;
    const merged = (t: T.Tensor) => T.reshape(t, [B, L, E]);
    const unfused = () => T.reshape(attendUnfused(merged(q), merged(k), merged(v), H, mask), [B, L, H, D]);
    const fused = () => T.attention(q, k, v, { causal });

    // Validate: the fused forward against float64 on sampled rows; its gradients against the unfused path's.
    const [hq, hk, hv] = await Promise.all([q, k, v].map(async (t) => R.Nd.from(await t.data(), t.shape)));
    const want = R.attention(hq, hk, hv, causal);
    const got = await T.noGrad(fused).data();
    validate(`attention ${label}`, Array.from({ length: 256 }, (_, s) => (s * 7919) % got.length).map((i) => ({ got: got[i], want: want.data[i] })), 1e-4);
    const grads = async (f: () => T.Tensor) => {
      for (const p of [q, k, v]) ((p.grad?.dispose(), (p.grad = null)));
      const out = f();
      T.backward(out, g);
      out.dispose();
      return Promise.all([q, k, v].map((p) => p.grad!.data()));
    };
    const [a, b] = [await grads(fused), await grads(unfused)];
    validate(
      `attention backward ${label}`,
      a.flatMap((ga, n) =>
        Array.from({ length: 128 }, (_, s) => (s * 104729) % ga.length).map((i) => ({ got: ga[i], want: b[n][i] })),
      ),
      1e-3,
    );

    const forwardFlops = 4 * D * pairs;
    const trainFlops = forwardFlops + 12 * D * pairs;
    for (const [impl, f] of [['ours (fused)', fused], ['ours (unfused)', unfused]] as const) {
      const fwd = await timeOurs(() => T.noGrad(f), { inner: 3, reps: 3 });
      results.push({ kernel: 'attention', shape: label, impl, ms: fwd.ms, gpuMs: fwd.gpuMs, rate: forwardFlops / fwd.ms / 1e6, unit: 'GFLOP/s' });
      const step = await timeOurs(
        () => {
          const out = f();
          T.backward(out, g);
          for (const p of [q, k, v]) ((p.grad?.dispose(), (p.grad = null)));
          return out;
        },
        { inner: 2, reps: 3 },
      );
      results.push({ kernel: 'attention fwd+bwd', shape: label, impl, ms: step.ms, gpuMs: step.gpuMs, rate: trainFlops / step.ms / 1e6, unit: 'GFLOP/s' });
    }
    if (T.gpu().hasFeature('shader-f16')) {
      // The same forward on f16 copies of q, k, v (f32 scores and softmax, f16 output), validated against the
      // float64 attention of the rounded inputs; forward only (the backward takes f32).
      const [fq, fk, fv] = [q, k, v].map((t) => T.keep(T.noGrad(() => T.cast(t, 'f16'))));
      const half = async (t: T.Tensor) => R.Nd.from(await T.noGrad(() => T.cast(t, 'f32')).data(), t.shape);
      const wantHalf = R.attention(await half(fq), await half(fk), await half(fv), causal);
      const halfAttention = () => T.attention(fq, fk, fv, { causal });
      const gotHalf = await T.noGrad(halfAttention).data();
      validate(
        `attention f16 ${label}`,
        Array.from({ length: 256 }, (_, s) => (s * 7919) % gotHalf.length).map((i) => ({ got: gotHalf[i], want: wantHalf.data[i] })),
        4e-3,
      );
      const fwd = await timeOurs(() => T.noGrad(halfAttention), { inner: 3, reps: 3 });
      results.push({
        kernel: 'attention',
        shape: label,
        impl: 'ours (fused, f16)',
        ms: fwd.ms,
        gpuMs: fwd.gpuMs,
        rate: forwardFlops / fwd.ms / 1e6,
        unit: 'GFLOP/s',
      });
      for (const t of [fq, fk, fv]) t.dispose();
    }
    if (tf) {
      // Head-major [B·H, L, D] inputs (the layout tfjs' batched matMul wants; the permute is not timed).
      const toTf = (t: R.Nd) => tf.tensor3d(Float32Array.from(R.permute(t, [0, 2, 1, 3]).data), [B * H, L, D]);
      const [tq, tk, tv] = [hq, hk, hv].map(toTf);
      const tmask = causal ? tf.tensor2d(Float32Array.from({ length: L * L }, (_, i) => (i % L > Math.floor(i / L) ? -1e9 : 0)), [L, L]) : null;
      const tfAttention = () =>
        tf.tidy(() => {
          const scores = tf.mul(tf.matMul(tq, tk, false, true), 1 / Math.sqrt(D));
          return tf.matMul(tf.softmax(tmask ? tf.add(scores, tmask) : scores), tv);
        });
      const tgot = await tfAttention().data();
      const wantHeadMajor = R.permute(want, [0, 2, 1, 3]).data;
      validate(
        `tfjs attention ${label}`,
        Array.from({ length: 256 }, (_, s) => (s * 7919) % tgot.length).map((i) => ({ got: tgot[i], want: wantHeadMajor[i] })),
        1e-3,
      );
      const tms = await timeTfjs(tf, tfAttention, { inner: 3, reps: 3 });
      results.push({ kernel: 'attention', shape: label, impl: 'tfjs-webgpu', ms: tms, gpuMs: null, rate: forwardFlops / tms / 1e6, unit: 'GFLOP/s' });
      for (const t of [tq, tk, tv, tmask]) t?.dispose();
    }
    for (const t of [q, k, v, g, mask]) t?.dispose();
  }
  return results;
}
