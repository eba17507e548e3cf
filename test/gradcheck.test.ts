// Finite-difference gradient check of every backward rule, table-driven: CASES is typed by OpName, so an
// op added to the backward table without a case here does not compile (and the first test fails at run
// time too). The analytic gradient is computed on the GPU in f32; the numeric one by central differences
// through the op's float64 reference, so it is exact to ~1e-10 and the tolerance only absorbs f32 rounding.
import * as assert from 'uvu/assert';
import * as T from '../ops/index.ts';
import * as R from '../kernels/reference.ts';
import type { OpName } from '../ops/backward.ts';
import { crossEntropyPerRow } from '../ops/rowwise.ts';
import { assertClose, randn, skipTest, suite, toNd, toTensor } from './harness.ts';

const test = suite('gradcheck');

interface Input {
  shape: number[];
  /** Maps the random normal values into the op's domain (e.g. positive for log). */
  domain?: (v: number) => number;
}
interface GradCase {
  name?: string;
  /** A WebGPU feature the case needs: skipped, with the reason, where the device lacks it. */
  requires?: GPUFeatureName;
  inputs: Input[];
  gpu: (xs: T.Tensor[]) => T.Tensor;
  ref: (xs: R.Nd[]) => R.Nd;
}

const positive = (v: number) => Math.abs(v) + 0.3;
const awayFromZero = (v: number) => Math.sign(v) * (Math.abs(v) + 0.3);
const unary = (gpu: (x: T.Tensor) => T.Tensor, f: (v: number) => number, domain?: (v: number) => number): GradCase[] => [
  { inputs: [{ shape: [3, 7], domain }], gpu: ([x]) => gpu(x), ref: ([x]) => R.map(x, f) },
];
const sumRef = (x: R.Nd, axes: number[], keep = false, scale = 1) => R.reduce(x, axes, keep, 0, (a, v) => a + v, scale);
const LABELS = Int32Array.from([3, 0, 6, 6, 2]);
const INDEX = Int32Array.from([4, 0, 4, 2, 5, 1, 4]);
const MASK = Int32Array.from({ length: 15 }, (_, i) => (i * 7) % 3 === 0 ? 1 : 0);

/** Custom ops (ops/custom.ts): SiLU as one WGSL kernel with a composed backward; αx + y with a uniform. */
const silu = T.customOp({
  name: 'silu',
  inputs: ['x'],
  body: 'let v = load_x(i); store(i, v / (1.0 + exp(-v)));',
  backward: (g, { inputs: { x } }) => {
    const s = T.sigmoid(x);
    return { x: T.mul(g, T.mul(s, T.add(T.mul(x, T.sub(1, s)), 1))) };
  },
});
const axpy = T.customOp({
  name: 'axpy',
  inputs: ['x', 'y'],
  uniforms: { alpha: 'f32' },
  body: 'store(i, u.alpha * load_x(i) + load_y(i));',
  backward: (g) => ({ x: T.mul(g, 0.75), y: g }),
});

const CASES: { [K in OpName]: GradCase[] } = {
  neg: unary(T.neg, (v) => -v),
  exp: unary(T.exp, Math.exp),
  log: unary(T.log, Math.log, positive),
  sqrt: unary(T.sqrt, Math.sqrt, positive),
  rsqrt: unary(T.rsqrt, (v) => 1 / Math.sqrt(v), positive),
  abs: unary(T.abs, Math.abs, awayFromZero),
  tanh: unary(T.tanh, Math.tanh),
  sigmoid: unary(T.sigmoid, R.sigmoid),
  relu: unary(T.relu, (v) => Math.max(v, 0), awayFromZero),
  gelu: unary(T.gelu, R.gelu),
  quickgelu: unary(T.quickgelu, R.quickgelu),
  add: [
    { inputs: [{ shape: [3, 1, 5] }, { shape: [4, 1] }], gpu: ([a, b]) => T.add(a, b), ref: ([a, b]) => R.zip([a, b], (x, y) => x + y) },
    { name: 'scalar', inputs: [{ shape: [2, 3] }], gpu: ([a]) => T.add(1.5, a), ref: ([a]) => R.map(a, (x) => 1.5 + x) },
  ],
  sub: [{ inputs: [{ shape: [3, 1, 5] }, { shape: [4, 1] }], gpu: ([a, b]) => T.sub(a, b), ref: ([a, b]) => R.zip([a, b], (x, y) => x - y) }],
  mul: [
    { inputs: [{ shape: [3, 1, 5] }, { shape: [4, 1] }], gpu: ([a, b]) => T.mul(a, b), ref: ([a, b]) => R.zip([a, b], (x, y) => x * y) },
    { name: 'scalar', inputs: [{ shape: [2, 3] }], gpu: ([a]) => T.mul(a, -2.5), ref: ([a]) => R.map(a, (x) => -2.5 * x) },
  ],
  div: [
    { inputs: [{ shape: [3, 1, 5] }, { shape: [4, 1], domain: awayFromZero }], gpu: ([a, b]) => T.div(a, b), ref: ([a, b]) => R.zip([a, b], (x, y) => x / y) },
    { name: 'scalar numerator', inputs: [{ shape: [2, 3], domain: awayFromZero }], gpu: ([a]) => T.div(1.5, a), ref: ([a]) => R.map(a, (x) => 1.5 / x) },
  ],
  pow: [
    { inputs: [{ shape: [2, 5], domain: positive }, { shape: [5] }], gpu: ([a, b]) => T.pow(a, b), ref: ([a, b]) => R.zip([a, b], R.powRef) },
    { name: 'cube', inputs: [{ shape: [7] }], gpu: ([a]) => T.pow(a, 3), ref: ([a]) => R.map(a, (x) => x ** 3) },
  ],
  clamp: [{ inputs: [{ shape: [3, 7] }], gpu: ([x]) => T.clamp(x, -0.5, 0.6), ref: ([x]) => R.map(x, (v) => Math.min(Math.max(v, -0.5), 0.6)) }],
  where: [
    {
      inputs: [{ shape: [3, 5] }, { shape: [5] }],
      gpu: ([a, b]) => T.where(T.Tensor.from(MASK, [3, 5]), a, b),
      ref: ([a, b]) => R.zip([R.Nd.from(MASK, [3, 5]), a, b], (m, x, y) => (m ? x : y)),
    },
  ],
  sum: [
    { inputs: [{ shape: [3, 4, 5] }], gpu: ([x]) => T.sum(x, [0, 2]), ref: ([x]) => sumRef(x, [0, 2]) },
    { name: 'mean, keepDims', inputs: [{ shape: [3, 4, 5] }], gpu: ([x]) => T.mean(x, 1, { keepDims: true }), ref: ([x]) => sumRef(x, [1], true, 1 / 4) },
  ],
  max: [{ inputs: [{ shape: [4, 6] }], gpu: ([x]) => T.max(x, 1), ref: ([x]) => R.reduce(x, [1], false, -Infinity, Math.max) }],
  min: [{ inputs: [{ shape: [4, 6] }], gpu: ([x]) => T.min(x, 0), ref: ([x]) => R.reduce(x, [0], false, Infinity, Math.min) }],
  reshape: [
    { inputs: [{ shape: [3, 8] }], gpu: ([x]) => T.reshape(x, [2, 4, 3]), ref: ([x]) => R.reshape(x, [2, 4, 3]) },
    { name: 'of a transpose (copy)', inputs: [{ shape: [3, 8] }], gpu: ([x]) => T.reshape(T.transpose(x), [24]), ref: ([x]) => R.reshape(R.permute(x, [1, 0]), [24]) },
  ],
  permute: [{ inputs: [{ shape: [2, 3, 4] }], gpu: ([x]) => T.permute(x, [2, 0, 1]), ref: ([x]) => R.permute(x, [2, 0, 1]) }],
  expand: [{ inputs: [{ shape: [3, 1] }], gpu: ([x]) => T.expand(x, [2, 3, 5]), ref: ([x]) => R.expand(x, [2, 3, 5]) }],
  slice: [{ inputs: [{ shape: [5, 6] }], gpu: ([x]) => T.slice(x, [1, 2], [4, 5]), ref: ([x]) => R.slice(x, [1, 2], [4, 5]) }],
  copy: [{ inputs: [{ shape: [4, 3] }], gpu: ([x]) => T.contiguous(T.transpose(x)), ref: ([x]) => R.permute(x, [1, 0]) }],
  concat: [
    { inputs: [{ shape: [2, 3] }, { shape: [2, 1] }, { shape: [2, 4] }], gpu: (xs) => T.concat(xs, 1), ref: (xs) => R.concat(xs, 1) },
    { name: 'stack', inputs: [{ shape: [2, 3] }, { shape: [2, 3] }], gpu: (xs) => T.stack(xs, 1), ref: (xs) => R.concat(xs.map((x) => R.reshape(x, [2, 1, 3])), 1) },
  ],
  pad: [{ inputs: [{ shape: [3, 4] }], gpu: ([x]) => T.pad(x, [[1, 2], [0, 3]], 0.5), ref: ([x]) => R.pad(x, [[1, 2], [0, 3]], 0.5) }],
  matmul: [
    {
      name: 'batched with bias',
      inputs: [{ shape: [2, 3, 5] }, { shape: [5, 4] }, { shape: [4] }],
      gpu: ([a, b, c]) => T.matmul(a, b, { bias: c }),
      ref: ([a, b, c]) => R.zip([R.matmul(a, b), c], (x, y) => x + y),
    },
    {
      // Linear's form: W's gradient is taken as the transposed product so it arrives contiguous (ops/matmul.ts).
      name: 'batched times a transposed 2-D weight, with bias (x·Wᵀ + b)',
      inputs: [{ shape: [2, 3, 5] }, { shape: [4, 5] }, { shape: [4] }],
      gpu: ([a, w, c]) => T.matmul(a, T.transpose(w), { bias: c }),
      ref: ([a, w, c]) => R.zip([R.matmul(a, R.permute(w, [1, 0])), c], (x, y) => x + y),
    },
    {
      name: 'with a residual added in the kernel (x + x·Wᵀ + b), and with an activation before it',
      inputs: [{ shape: [2, 3, 5] }, { shape: [5, 5] }, { shape: [5] }, { shape: [2, 3, 5] }],
      gpu: ([a, w, c, r]) => T.add(T.matmul(a, T.transpose(w), { bias: c, residual: r }), T.matmul(a, T.transpose(w), { activation: 'gelu', residual: r })),
      ref: ([a, w, c, r]) => {
        const y = R.matmul(a, R.permute(w, [1, 0]));
        return R.zip([y, c, r], (p, b, q) => p + b + q + R.gelu(p) + q);
      },
    },
    {
      name: 'transposed operands, broadcast batch',
      inputs: [{ shape: [5, 3] }, { shape: [2, 4, 5] }],
      gpu: ([a, b]) => T.matmul(T.transpose(a), T.transpose(b)),
      ref: ([a, b]) => R.matmul(R.permute(a, [1, 0]), R.permute(b, [0, 2, 1])),
    },
  ],
  softmax: [
    { inputs: [{ shape: [4, 7] }], gpu: ([x]) => T.softmax(x), ref: ([x]) => R.softmax(x) },
    { name: 'vec4 rows', inputs: [{ shape: [3, 8] }], gpu: ([x]) => T.softmax(x), ref: ([x]) => R.softmax(x) },
    { name: 'wide rows (subgroup per row)', inputs: [{ shape: [2, 256] }], gpu: ([x]) => T.softmax(x), ref: ([x]) => R.softmax(x) },
  ],
  logSoftmax: [
    { inputs: [{ shape: [4, 7] }], gpu: ([x]) => T.logSoftmax(x), ref: ([x]) => R.logSoftmax(x) },
    { name: 'vec4 rows', inputs: [{ shape: [3, 8] }], gpu: ([x]) => T.logSoftmax(x), ref: ([x]) => R.logSoftmax(x) },
  ],
  layerNorm: [
    {
      inputs: [{ shape: [4, 9] }, { shape: [9] }, { shape: [9] }],
      gpu: ([x, w, b]) => T.layerNorm(x, w, b, 1e-5),
      ref: ([x, w, b]) => R.layerNorm(x, w, b, 1e-5),
    },
    {
      name: 'vec4 rows',
      inputs: [{ shape: [3, 8] }, { shape: [8] }, { shape: [8] }],
      gpu: ([x, w, b]) => T.layerNorm(x, w, b, 1e-5),
      ref: ([x, w, b]) => R.layerNorm(x, w, b, 1e-5),
    },
  ],
  crossEntropy: [
    { inputs: [{ shape: [5, 7] }], gpu: ([x]) => crossEntropyPerRow(x, T.Tensor.from(LABELS)), ref: ([x]) => R.crossEntropyPerRow(x, LABELS) },
    { name: 'mean', inputs: [{ shape: [5, 7] }], gpu: ([x]) => T.crossEntropy(x, T.Tensor.from(LABELS)), ref: ([x]) => sumRef(R.crossEntropyPerRow(x, LABELS), [0], false, 1 / 5) },
    { name: 'vec4 rows', inputs: [{ shape: [5, 8] }], gpu: ([x]) => crossEntropyPerRow(x, T.Tensor.from(LABELS)), ref: ([x]) => R.crossEntropyPerRow(x, LABELS) },
  ],
  indexSelect: [
    { inputs: [{ shape: [6, 4] }], gpu: ([x]) => T.indexSelect(x, 0, T.Tensor.from(INDEX)), ref: ([x]) => R.indexSelect(x, 0, INDEX) },
    { name: 'middle axis', inputs: [{ shape: [2, 6, 3] }], gpu: ([x]) => T.indexSelect(x, 1, T.Tensor.from(INDEX)), ref: ([x]) => R.indexSelect(x, 1, INDEX) },
  ],
  im2col: [
    { name: '3×3 stride 2 pad 1', inputs: [{ shape: [2, 2, 5, 4] }], gpu: ([x]) => T.im2col(x, 3, 3, 2, 1), ref: ([x]) => R.im2col(x, 3, 3, 2, 1) },
    {
      // Stride equal to the kernel, no padding: the columns come from one strided copy (ViT's patch embedding).
      name: 'conv2d over patches',
      inputs: [{ shape: [2, 3, 4, 6] }, { shape: [5, 3, 2, 2] }],
      gpu: ([x, w]) => T.conv2d(x, w, { stride: 2 }),
      ref: ([x, w]) => R.conv2d(x, w, 2, 0),
    },
    {
      name: 'conv2d with bias',
      inputs: [{ shape: [2, 3, 5, 6] }, { shape: [4, 3, 3, 2] }, { shape: [4] }],
      gpu: ([x, w, b]) => T.conv2d(x, w, { stride: 2, padding: 1, bias: b }),
      ref: ([x, w, b]) => R.conv2d(x, w, 2, 1, b),
    },
  ],
  pool2d: [
    { name: 'avg 3×3 stride 2 pad 1', inputs: [{ shape: [2, 2, 5, 6] }], gpu: ([x]) => T.avgPool2d(x, 3, { stride: 2, padding: 1 }), ref: ([x]) => R.pool2d(x, 'avg', 3, 2, 1, true) },
    { name: 'avg without counting pads', inputs: [{ shape: [1, 2, 5, 5] }], gpu: ([x]) => T.avgPool2d(x, 2, { stride: 2, padding: 1, countIncludePad: false }), ref: ([x]) => R.pool2d(x, 'avg', 2, 2, 1, false) },
    { name: 'max 3×3 stride 2 pad 1', inputs: [{ shape: [2, 2, 5, 6] }], gpu: ([x]) => T.maxPool2d(x, 3, { stride: 2, padding: 1 }), ref: ([x]) => R.pool2d(x, 'max', 3, 2, 1, false) },
    { name: 'adaptive to 2×3', inputs: [{ shape: [2, 2, 5, 7] }], gpu: ([x]) => T.adaptiveAvgPool2d(x, [2, 3]), ref: ([x]) => R.pool2d(x, 'adaptive', 0, 1, 0, false, [2, 3]) },
  ],
  batchNorm2d: [
    {
      inputs: [{ shape: [3, 2, 3, 2] }, { shape: [2] }, { shape: [2] }],
      gpu: ([x, w, b]) => T.batchNorm2dTrain(x, w, b, 1e-5).y,
      ref: ([x, w, b]) => R.batchNorm2d(x, w, b, 1e-5),
    },
    {
      name: 'vec4 planes',
      inputs: [{ shape: [2, 3, 2, 4] }, { shape: [3] }, { shape: [3] }],
      gpu: ([x, w, b]) => T.batchNorm2dTrain(x, w, b, 1e-5).y,
      ref: ([x, w, b]) => R.batchNorm2d(x, w, b, 1e-5),
    },
  ],
  attention: [
    {
      name: 'head dim 3, 5 queries × 4 keys',
      inputs: [{ shape: [2, 5, 2, 3] }, { shape: [2, 4, 2, 3] }, { shape: [2, 4, 2, 3] }],
      gpu: ([q, k, v]) => T.attention(q, k, v),
      ref: ([q, k, v]) => R.attention(q, k, v, false),
    },
    {
      name: 'vec4 heads, causal',
      inputs: [{ shape: [2, 6, 2, 4] }, { shape: [2, 6, 2, 4] }, { shape: [2, 6, 2, 4] }],
      gpu: ([q, k, v]) => T.attention(q, k, v, { causal: true }),
      ref: ([q, k, v]) => R.attention(q, k, v, true),
    },
    {
      name: 'head-major views, explicit scale',
      inputs: [{ shape: [2, 3, 5, 4] }, { shape: [2, 3, 7, 4] }, { shape: [2, 3, 7, 4] }],
      gpu: (xs) => T.attention(...(xs.map((x) => T.permute(x, [0, 2, 1, 3])) as [T.Tensor, T.Tensor, T.Tensor]), { scale: 0.7 }),
      ref: (xs) => R.attention(...(xs.map((x) => R.permute(x, [0, 2, 1, 3])) as [R.Nd, R.Nd, R.Nd]), false, 0.7),
    },
  ],
  cast: [
    {
      name: 'f32 → f16 → f32, values exact in f16',
      requires: 'shader-f16',
      inputs: [{ shape: [3, 7], domain: (v) => Math.round(v * 64) / 64 }],
      gpu: ([x]) => T.cast(T.cast(x, 'f16'), 'f32'),
      ref: ([x]) => R.map(x, (v) => v),
    },
  ],
  custom: [
    { name: 'SiLU kernel, composed backward', inputs: [{ shape: [3, 7] }], gpu: ([x]) => silu({ x }), ref: ([x]) => R.map(x, (v) => v / (1 + Math.exp(-v))) },
    {
      name: 'αx + y of a transposed view, with a uniform',
      inputs: [{ shape: [4, 3] }, { shape: [3, 4] }],
      gpu: ([x, y]) => axpy({ x: T.transpose(x), y }, { alpha: 0.75 }),
      ref: ([x, y]) => R.zip([R.permute(x, [1, 0]), y], (a, b) => 0.75 * a + b),
    },
  ],
  checkpoint: [
    {
      name: 'a recomputed block: x·tanh(x) + exp(x)',
      inputs: [{ shape: [3, 5] }],
      gpu: ([x]) => T.checkpoint((h) => T.add(T.mul(h, T.tanh(h)), T.exp(h)), x),
      ref: ([x]) => R.map(x, (v) => v * Math.tanh(v) + Math.exp(v)),
    },
  ],
  selfAttention: [
    { name: 'packed, 2 heads of 4, causal', inputs: [{ shape: [2, 5, 24] }], gpu: ([x]) => T.selfAttention(x, 2, { causal: true }), ref: ([x]) => R.selfAttention(x, 2, true) },
    { name: 'packed, 3 heads of 3', inputs: [{ shape: [2, 4, 27] }], gpu: ([x]) => T.selfAttention(x, 3), ref: ([x]) => R.selfAttention(x, 3, false) },
  ],
};

const TOL = { atol: 5e-4, rtol: 2e-3 };

test('every op in the backward table has a gradient case', () => {
  const missing = Object.keys(T.backwardRules).filter((op) => !(CASES[op as OpName]?.length > 0));
  assert.equal(missing, [], `ops without a gradient check: ${missing.join(', ')}`);
});

let seed = 5000;
for (const [op, cases] of Object.entries(CASES) as [OpName, GradCase[]][]) {
  for (const c of cases) {
    const title = `${op}${c.name ? ` (${c.name})` : ''}: analytic gradient = finite differences`;
    if (c.requires && !T.gpu().hasFeature(c.requires)) {
      skipTest(test, title, `the device lacks the WebGPU feature '${c.requires}'`);
      continue;
    }
    test(title, async () => {
      const xs = c.inputs.map((inp) => R.map(randn(inp.shape, seed++), inp.domain ?? ((v) => v)));
      const params = xs.map((x) => T.param(toTensor(x)));
      const out = c.gpu(params);
      const expected = c.ref(xs);
      assertClose(await out.data(), expected.data, `${op} forward`, { atol: 1e-5, rtol: 1e-4 });
      const g = randn(expected.shape, seed++);
      T.backward(out, toTensor(g));
      const objective = (ys: R.Nd[]) => c.ref(ys).data.reduce((acc, v, i) => acc + v * g.data[i], 0);
      for (const [k, x] of xs.entries()) {
        const numeric = new Float64Array(x.size);
        for (let i = 0; i < x.size; i++) {
          const h = 1e-6 * Math.max(1, Math.abs(x.data[i]));
          const orig = x.data[i];
          x.data[i] = orig + h;
          const up = objective(xs);
          x.data[i] = orig - h;
          const down = objective(xs);
          x.data[i] = orig;
          numeric[i] = (up - down) / (2 * h);
        }
        const grad = params[k].grad;
        assert.ok(grad, `${op}: input ${k} received no gradient`);
        assertClose((await toNd(grad!)).data, numeric, `${op} d/dinput${k}`, TOL);
      }
      for (const p of params) p.dispose();
      out.dispose();
    });
  }
}

test.run();
