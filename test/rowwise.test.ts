// Fused row kernels (softmax, log-softmax, layer norm, cross-entropy) against float64 references.
import * as assert from 'uvu/assert';
import * as T from '../ops/index.ts';
import * as R from '../kernels/reference.ts';
import { crossEntropyPerRow } from '../ops/rowwise.ts';
import { layerNormRaw } from '../kernels/layernorm.ts';
import { registerChunks, rowLanes } from '../kernels/rows.ts';
import { softmaxRaw } from '../kernels/softmax.ts';
import { assertTensorClose, randInt, randn, skipTest, suite, toTensor } from './harness.ts';

const test = suite('rowwise');
// Widths that are multiples of 4 take the vec4 kernels; the others the scalar ones.
// Rows of ≥ 256 floats (multiple of 4) take the one-subgroup-per-row softmax where subgroups have a fixed width.
const SHAPES = [[1], [7], [3, 33], [129, 257], [2, 3, 129], [5, 1], [9, 64], [3, 4], [13, 256], [3, 1028]];

test('softmax and logSoftmax on odd shapes and large magnitudes', async () => {
  for (const [i, shape] of SHAPES.entries()) {
    for (const scale of [1, 30]) {
      const x = randn(shape, 800 + i, scale);
      await assertTensorClose(T.softmax(toTensor(x)), R.softmax(x), `softmax ${shape} ×${scale}`, { atol: 1e-6, rtol: 1e-5 });
      await assertTensorClose(T.logSoftmax(toTensor(x)), R.logSoftmax(x), `logSoftmax ${shape} ×${scale}`, { atol: 1e-5 * scale, rtol: 1e-5 });
    }
  }
});

// Every path for wide rows, each run by name (the default per kernel, or the tuned one, is only one of them).
// 'registers' (softmax only; layer norm walks it as 'subgroup') holds rows that split evenly over the lanes
// into at most 64 values of vec4 each; the others ([3, 1028], [70, 260], [2, 4096]) fall back to 'subgroup'.
const lanes = rowLanes(1028, 4);
for (const path of ['thread', 'subgroup', 'registers'] as const) {
  const title = `wide rows, ${path === 'thread' ? 'one thread' : `one ${lanes}-lane subgroup${path === 'registers' ? ' holding the row in registers' : ''}`} per row: softmax and layerNorm run that kernel (profiled) and match`;
  if (path !== 'thread' && lanes === null) {
    skipTest(test, `wide rows, path ${path}`, 'this device has no fixed-width subgroups');
    continue;
  }
  test(title, async () => {
    for (const [i, shape] of [[13, 256], [3, 1028], [70, 260], [5, 2048], [2, 4096]].entries()) {
      const chunks = registerChunks(shape[1], 4);
      const suffix = path === 'thread' ? '' : `_subgroup${lanes}`;
      const softSuffix = path === 'registers' && chunks !== null ? `_registers${lanes}x${chunks}` : suffix;
      const D = shape[1];
      const x = R.map(randn(shape, 850 + i, 3), (v) => v + 1);
      const [w, b] = [randn([D], 880 + i), randn([D], 890 + i)];
      const [xt, wt, bt] = [toTensor(x), toTensor(w), toTensor(b)];
      let soft: T.Tensor | null = null;
      let norm: { y: T.Tensor; mean: T.Tensor; rstd: T.Tensor } | null = null;
      const kernels = await T.profile(() => {
        soft = softmaxRaw(xt, false, path);
        norm = layerNormRaw(xt, wt, bt, 1e-5, path);
      });
      if (kernels) {
        const names = kernels.map((k) => k.name);
        assert.ok(names.includes(`softmax_vec4${softSuffix}`) && names.includes(`layerNorm_vec4${suffix}`), names.join(', '));
      }
      await assertTensorClose(soft!, R.softmax(x), `softmax ${shape} (${path})`, { atol: 1e-6, rtol: 1e-5 });
      await assertTensorClose(softmaxRaw(xt, true, path), R.logSoftmax(x), `logSoftmax ${shape} (${path})`, { atol: 1e-5, rtol: 1e-5 });
      await assertTensorClose(norm!.y, R.layerNorm(x, w, b, 1e-5), `layerNorm ${shape} (${path})`, { atol: 1e-5, rtol: 1e-4 });
    }
  });
}

test('softmax of a transposed view and of rows holding -inf masks', async () => {
  const x = randn([33, 7], 9);
  await assertTensorClose(T.softmax(T.transpose(toTensor(x))), R.softmax(R.permute(x, [1, 0])), 'softmax of transpose', { atol: 1e-6, rtol: 1e-5 });
  // A causal mask as CLIP's text encoder adds it: -inf above the diagonal.
  const n = 5;
  const mask = R.Nd.from(Array.from({ length: n * n }, (_, k) => (k % n > Math.floor(k / n) ? -Infinity : 0)), [n, n]);
  const s = randn([n, n], 10);
  const masked = R.zip([s, mask], (a, b) => a + b);
  await assertTensorClose(T.softmax(T.add(toTensor(s), toTensor(mask))), R.softmax(masked), 'causal softmax', { atol: 1e-6, rtol: 1e-5 });
});

test('layerNorm matches the reference with affine parameters and eps', async () => {
  for (const [i, shape] of [[7], [3, 33], [129, 257], [2, 3, 129], [4, 1], [5, 68], [3, 8]].entries()) {
    const D = shape[shape.length - 1];
    const x = R.map(randn(shape, 900 + i, 2), (v) => v + 3);
    const w = randn([D], 950 + i);
    const b = randn([D], 960 + i);
    for (const eps of [1e-5, 1e-2]) {
      await assertTensorClose(T.layerNorm(toTensor(x), toTensor(w), toTensor(b), eps), R.layerNorm(x, w, b, eps), `layerNorm ${shape} eps ${eps}`, { atol: 1e-5, rtol: 1e-4 });
    }
  }
});

test('cross-entropy per row and mean, with out-of-range labels rejected', async () => {
  for (const [i, [N, C]] of [[1, 7], [33, 10], [129, 257], [7, 1], [9, 12], [3, 4]].entries()) {
    const logits = randn([N, C], 1000 + i, 3);
    const labels = randInt(N, C, 1100 + i);
    const perRow = R.crossEntropyPerRow(logits, labels);
    const labelsT = T.Tensor.from(labels, [N]);
    await assertTensorClose(crossEntropyPerRow(toTensor(logits), labelsT), perRow, `CE rows ${N}x${C}`, { atol: 1e-5, rtol: 1e-5 });
    const mean = perRow.data.reduce((a, b) => a + b, 0) / N;
    assert.ok(Math.abs((await T.crossEntropy(toTensor(logits), labelsT).item()) - mean) < 1e-5 * Math.max(1, mean));
  }
});

test.run();
