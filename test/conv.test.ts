// Convolution, pooling and batch norm against float64 references on odd shapes.
import * as assert from 'uvu/assert';
import * as T from '../ops/index.ts';
import * as R from '../kernels/reference.ts';
import { assertTensorClose, randn, suite, toTensor } from './harness.ts';

const test = suite('conv');

test('conv2d: odd sizes, strides, padding, 1×1 and bias', async () => {
  const cases: [number[], number[], number, number][] = [
    [[2, 3, 7, 9], [5, 3, 3, 3], 1, 1],
    [[1, 3, 33, 17], [4, 3, 7, 7], 2, 3], // ResNet stem geometry, odd input
    [[2, 8, 5, 5], [7, 8, 1, 1], 1, 0], // pointwise: no im2col
    [[2, 4, 9, 9], [3, 4, 1, 1], 2, 0],
    [[1, 2, 4, 4], [3, 2, 4, 4], 4, 0], // ViT patch embedding: kernel = stride
  ];
  for (const [i, [xs, ws, stride, padding]] of cases.entries()) {
    const x = randn(xs, 1300 + i);
    const w = randn(ws, 1400 + i, 0.3);
    const b = randn([ws[0]], 1500 + i);
    await assertTensorClose(T.conv2d(toTensor(x), toTensor(w), { stride, padding }), R.conv2d(x, w, stride, padding), `conv ${xs} * ${ws} s${stride} p${padding}`, { atol: 1e-4, rtol: 1e-4 });
    await assertTensorClose(T.conv2d(toTensor(x), toTensor(w), { stride, padding, bias: toTensor(b) }), R.conv2d(x, w, stride, padding, b), `conv+bias ${xs}`, { atol: 1e-4, rtol: 1e-4 });
  }
});

test('pooling: average (with and without pads counted), max, adaptive', async () => {
  const x = randn([2, 3, 9, 7], 1600);
  await assertTensorClose(T.avgPool2d(toTensor(x), 2), R.pool2d(x, 'avg', 2, 2, 0, true), 'avg 2');
  await assertTensorClose(T.avgPool2d(toTensor(x), 3, { stride: 2, padding: 1 }), R.pool2d(x, 'avg', 3, 2, 1, true), 'avg 3 s2 p1', { atol: 1e-6, rtol: 1e-6 });
  await assertTensorClose(T.avgPool2d(toTensor(x), 3, { stride: 2, padding: 1, countIncludePad: false }), R.pool2d(x, 'avg', 3, 2, 1, false), 'avg no pad', { atol: 1e-6, rtol: 1e-6 });
  await assertTensorClose(T.maxPool2d(toTensor(x), 3, { stride: 2, padding: 1 }), R.pool2d(x, 'max', 3, 2, 1, false), 'max 3 s2 p1');
  for (const out of [[1, 1], [3, 2], [9, 7], [4, 5]] as [number, number][]) {
    await assertTensorClose(T.adaptiveAvgPool2d(toTensor(x), out), R.pool2d(x, 'adaptive', 0, 1, 0, false, out), `adaptive ${out}`, { atol: 1e-6, rtol: 1e-6 });
  }
});

test('batch norm (training) normalises each channel and returns its statistics', async () => {
  const x = R.map(randn([4, 3, 5, 7], 1700, 2), (v) => v + 1);
  const w = randn([3], 1701);
  const b = randn([3], 1702);
  const { y, mean, variance } = T.batchNorm2dTrain(toTensor(x), toTensor(w), toTensor(b));
  await assertTensorClose(y, R.batchNorm2d(x, w, b, 1e-5), 'batchNorm', { atol: 1e-5, rtol: 1e-4 });
  const perChannel = R.reduce(R.permute(x, [1, 0, 2, 3]), [1, 2, 3], false, 0, (a, v) => a + v, 1 / 140);
  await assertTensorClose(mean, perChannel, 'mean', { atol: 1e-5, rtol: 1e-5 });
  assert.equal(variance.shape, [3]);
  const x4 = randn([3, 5, 4, 6], 1703); // planes of 24: the vec4 kernels
  const [w4, b4] = [randn([5], 1704), randn([5], 1705)];
  await assertTensorClose(T.batchNorm2dTrain(toTensor(x4), toTensor(w4), toTensor(b4)).y, R.batchNorm2d(x4, w4, b4, 1e-5), 'batchNorm vec4', { atol: 1e-5, rtol: 1e-4 });
});

test.run();
