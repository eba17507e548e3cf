// f16 as a storage type: the host conversion (round to nearest even, subnormals, overflow, NaN), uploads and
// downloads at any offset, the casts both ways on the GPU (flat, vec4 and strided kernels), copies, half the
// bytes, every elementwise op on f16 values (computed in f32, rounded once), reductions, gathers, matmuls, row
// kernels, cross-entropy, convolution, pooling and fused attention (forward and backward) in f16 with f32
// arithmetic, and clear errors for what does not take f16 (batch norm) or mixes dtypes.
// On a device without shader-f16 every f16 test is reported skipped and the refusal itself is tested.
import * as assert from 'uvu/assert';
import * as T from '../ops/index.ts';
import * as R from '../kernels/reference.ts';
import { fromHalfBits, toHalfBits } from '../core/dtype.ts';
import { matmulUnsupported } from '../kernels/policy.ts';
import { MATMUL_VARIANTS, matmulRaw } from '../kernels/matmul.ts';
import { crossEntropyBackwardRaw, crossEntropyRaw } from '../kernels/crossentropy.ts';
import { layerNormBackwardRaw, layerNormRaw } from '../kernels/layernorm.ts';
import { rowLanes } from '../kernels/rows.ts';
import { reduceRaw } from '../kernels/reduce.ts';
import { softmaxBackwardRaw, softmaxRaw } from '../kernels/softmax.ts';
import { attendUnfused, causalMask } from '../nn/attention.ts';
import { attentionBackward, attentionForward, selfAttentionBackward, selfAttentionForward } from '../kernels/attention.ts';
import { assertClose, assertThrows, randn, skipTest, suite, toTensor } from './harness.ts';

const test = suite('f16');
const hasF16 = T.gpu().hasFeature('shader-f16');
/** Each value rounded to the nearest half, as the host conversion defines it. */
const roundHalf = (xs: ArrayLike<number>) => Array.from(xs, (v) => fromHalfBits(toHalfBits(v)));

test('host conversion: exact values, round to nearest even, subnormals, overflow, NaN, signed zero', () => {
  const cases: [number, number][] = [
    [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65520, 0x7c00], [-1e6, 0xfc00], [2 ** -24, 0x0001], [2 ** -25, 0x0000],
    [3 * 2 ** -26, 0x0001], [2 ** -14, 0x0400], [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [Infinity, 0x7c00], [-0, 0x8000],
  ];
  for (const [value, bits] of cases) assert.is(toHalfBits(value), bits, `${value}`);
  assert.ok(Number.isNaN(fromHalfBits(toHalfBits(NaN))));
  for (let h = 0; h < 0x7c00; h += 37) assert.is(toHalfBits(fromHalfBits(h)), h, `bits ${h} round-trip`);
});

if (!hasF16) {
  skipTest(test, 'f16 tensors, casts and arithmetic', `the device lacks the WebGPU feature 'shader-f16'`);
  test('asking for f16 on a device without shader-f16 is refused, naming the feature', async () => {
    await assertThrows(() => T.Tensor.from([1, 2, 3], [3], 'f16'), T.DTypeError, /f16 tensors need the WebGPU feature 'shader-f16', which this device .* lacks; use f32/);
  });
} else {
  test('upload and download at odd sizes and offsets (spans that start mid-word)', async () => {
    for (const n of [1, 3, 7, 33, 257]) {
      const x = randn([n], 100 + n, 50);
      const t = T.Tensor.from(Array.from(x.data), [n], 'f16');
      assert.is(t.storage.bytes, Math.ceil((2 * n) / 4) * 4, 'two bytes per value, whole words');
      assert.equal(Array.from(await t.data()), roundHalf(x.data), `n = ${n}`);
      if (n > 2) {
        const tail = T.slice(t, [1]); // offset 1: starts in the middle of a 4-byte word
        assert.equal(Array.from(await tail.data()), roundHalf(x.data).slice(1));
      }
    }
  });

  test('casts on the GPU round exactly as the host does, both ways, through flat, vec4 and strided kernels', async () => {
    for (const shape of [[1], [7], [33, 5], [4, 64], [3, 257]]) {
      const base = randn(shape, 200 + shape[0], 30);
      const x = R.Nd.from(Array.from(base.data, (v, i) => (i % 11 === 0 ? v * 1e-6 : i % 13 === 0 ? v * 3000 : v)), shape);
      const half = T.cast(toTensor(x), 'f16');
      assert.is(half.dtype, 'f16');
      assert.equal(Array.from(await half.data()), roundHalf(x.data), `f32 → f16 ${shape}`);
      const back = T.cast(half, 'f32');
      assert.equal(Array.from(await back.data()), roundHalf(x.data), `f16 → f32 ${shape}`);
      if (shape.length === 2) {
        const transposed = T.contiguous(T.transpose(half));
        assert.equal(Array.from(await transposed.data()), roundHalf(R.permute(x, [1, 0]).data), `transposed copy ${shape}`);
      }
    }
  });

  test('casts between i32 and f16, both ways, flat and vec4 (integers rounded to the nearest half)', async () => {
    for (const n of [3, 8, 13]) {
      const ints = Array.from({ length: n }, (_, i) => (i % 2 ? -1 : 1) * (i * 977 + (i % 3)));
      const h = T.cast(T.Tensor.from(Int32Array.from(ints)), 'f16');
      assert.is(h.dtype, 'f16');
      assert.equal(Array.from(await h.data()), roundHalf(ints), `i32 → f16, n = ${n}`);
      assert.equal(Array.from(await T.cast(h, 'i32').data()), roundHalf(ints).map(Math.trunc), `f16 → i32, n = ${n}`);
    }
  });

  test('copies keep f16: concat, pad (fill in f16), stack; half the bytes of f32', async () => {
    const [a, b] = [randn([3, 5], 301), randn([2, 5], 302)];
    const [ha, hb] = [T.Tensor.from(Array.from(a.data), [3, 5], 'f16'), T.Tensor.from(Array.from(b.data), [2, 5], 'f16')];
    const joined = T.concat([ha, hb], 0);
    assert.equal([joined.dtype, ...joined.shape], ['f16', 5, 5]);
    assert.equal(Array.from(await joined.data()), roundHalf([...a.data, ...b.data]));
    const padded = T.pad(ha, [[1, 0], [0, 2]], 0.1);
    const want = roundHalf(R.pad(a, [[1, 0], [0, 2]], 0.1).data);
    assert.equal(Array.from(await padded.data()), want);
    const before = T.memory().liveBytes;
    const wide = T.zeros([1024, 1024]);
    const f32Bytes = T.memory().liveBytes - before;
    const narrow = T.zeros([1024, 1024], 'f16');
    assert.is(T.memory().liveBytes - before - f32Bytes, f32Bytes / 2);
    for (const t of [wide, narrow]) t.dispose();
  });

  test('a sum of f16 values stored in f32 keeps what f16 would round away (short and chunked reductions, rows and columns)', async () => {
    for (const [rows, cols] of [[7, 5], [3000, 3]]) {
      // Values exact in f16 whose column sums (up to ~9000) are not: f16 has 11 bits of mantissa.
      const values = Array.from({ length: rows * cols }, (_, i) => 1 + ((i * 37) % 101) / 64);
      const x = T.cast(T.Tensor.from(values, [rows, cols]), 'f16');
      const sum = reduceRaw('sum', x, [0], false, 1, 'f32');
      assert.is(sum.dtype, 'f32');
      const want = Array.from({ length: cols }, (_, c) => values.filter((_, i) => i % cols === c).reduce((a, b) => a + b, 0));
      assertClose(await sum.data(), want, `column sums of [${rows}, ${cols}] in f32`, { atol: 0, rtol: 1e-6 });
      const rowSums = reduceRaw('sum', x, [1], false, 1, 'f32');
      assertClose(await rowSums.data(), Array.from({ length: rows }, (_, r) => values.slice(r * cols, (r + 1) * cols).reduce((a, b) => a + b, 0)), 'row sums', { atol: 0, rtol: 1e-6 });
      for (const t of [x, sum, rowSums]) t.dispose();
    }
    await assertThrows(() => reduceRaw('sum', T.zeros([2], 'i32'), [0], false, 1, 'f32'), T.DTypeError, /i32 input gives an i32 result/);
  });

  test('elementwise arithmetic in f16 matches the float64 reference within f16 precision', async () => {
    const [x, y] = [randn([9, 33], 401, 4), randn([33], 402, 4)];
    const [hx, hy] = [T.Tensor.from(Array.from(x.data), x.shape, 'f16'), T.Tensor.from(Array.from(y.data), y.shape, 'f16')];
    const xr = R.Nd.from(roundHalf(x.data), x.shape);
    const yr = R.Nd.from(roundHalf(y.data), y.shape);
    const tol = { atol: 1e-2, rtol: 2 ** -10 }; // one f16 rounding of the result
    assertClose(await T.add(hx, hy).data(), R.zip([xr, yr], (p, q) => p + q).data, 'add (broadcast)', tol);
    assertClose(await T.mul(hx, 0.5).data(), R.map(xr, (p) => p * 0.5).data, 'mul by a scalar', tol);
    assertClose(await T.neg(hx).data(), R.map(xr, (p) => -p).data, 'neg', tol);
    // Float functions run in f32 on the f16 values and round once.
    assertClose(await T.exp(T.mul(hx, 0.25)).data(), R.map(xr, (p) => Math.exp(p * 0.25)).data, 'exp', { atol: 1e-2, rtol: 2 ** -9 });
    assertClose(await T.quickgelu(hx).data(), R.map(xr, R.quickgelu).data, 'quickgelu', tol);
    assertClose(await T.div(hy, T.add(T.abs(hx), 1)).data(), R.zip([xr, yr], (p, q) => q / (Math.abs(p) + 1)).data, 'div, abs', tol);
  });

  test('gradients flow through casts to f32 parameters (a model computing part of its work in f16)', async () => {
    const w = T.param(T.Tensor.from([0.5, -1.25, 2, 0.75], [4]));
    const loss = T.sum(T.mul(T.cast(T.mul(T.cast(w, 'f16'), 2), 'f32'), T.Tensor.from([1, 2, 3, 4], [4])));
    T.backward(loss);
    assert.equal(Array.from(await w.grad!.data()), [2, 4, 6, 8]);
    for (const t of [w, loss]) t.dispose();
  });

  for (const config of MATMUL_VARIANTS) {
    const name = `matmul ${config.version} ${config.tm}x${config.tn} in f16 (f32 accumulation)`;
    const reason = matmulUnsupported(config);
    if (reason) {
      skipTest(test, name, reason);
      continue;
    }
    test(`${name}: odd shapes, transposed views, bias and activation`, async () => {
      let seed = 500;
      for (const [M, K, N] of [[1, 7, 1], [7, 33, 5], [33, 12, 257], [64, 64, 64]]) {
        const [a, b, bias] = [randn([M, K], seed++), randn([K, N], seed++), randn([N], seed++)];
        const half = (x: R.Nd) => R.Nd.from(roundHalf(x.data), x.shape);
        const up = (x: R.Nd) => T.Tensor.from(Array.from(x.data), x.shape, 'f16');
        // The float64 product of the rounded inputs, then one f16 rounding: what the kernel should return.
        const want = (x: R.Nd) => roundHalf(x.data);
        const tol = { atol: 2e-3 * Math.sqrt(K), rtol: 2 ** -10 };
        const plain = matmulRaw(up(a), up(b), {}, config);
        assert.is(plain.dtype, 'f16');
        assertClose(await plain.data(), want(R.matmul(half(a), half(b))), `${name} ${M}x${K}x${N}`, tol);
        const bt = T.transpose(T.Tensor.from(Array.from(R.permute(b, [1, 0]).data), [N, K], 'f16'));
        const fused = matmulRaw(up(a), bt, { bias: up(bias), activation: 'relu' }, config);
        const ref = R.map(R.zip([R.matmul(half(a), half(b)), R.Nd.from(roundHalf(bias.data), [N])], (p, q) => p + q), (v) => Math.max(v, 0));
        assertClose(await fused.data(), want(ref), `${name} ${M}x${K}x${N} bᵀ + bias, relu`, tol);
        // Mixed (autocast: f16 activations times f32 weights): each operand read in its own dtype, one rounding.
        const mixed = matmulRaw(up(a), T.transpose(toTensor(R.permute(b, [1, 0]))), { bias: toTensor(bias), activation: 'relu', dtype: 'f16' }, config);
        const mixedRef = R.map(R.zip([R.matmul(half(a), b), bias], (p, q) => p + q), (v) => Math.max(v, 0));
        assert.is(mixed.dtype, 'f16');
        assertClose(await mixed.data(), want(mixedRef), `${name} ${M}x${K}x${N} f16 · f32ᵀ + f32 bias → f16`, tol);
        const wide = matmulRaw(toTensor(a), up(b), { dtype: 'f32' }, config);
        assert.is(wide.dtype, 'f32');
        assertClose(await wide.data(), R.matmul(a, half(b)).data, `${name} ${M}x${K}x${N} f32 · f16 → f32`, { atol: 1e-4 * Math.sqrt(K), rtol: 1e-5 });
        for (const t of [plain, fused, bt, mixed, wide]) t.dispose();
      }
    });
  }

  test('a mixed matmul (f16 activations, f32 weight and bias) differentiates into each operand\'s own dtype', async () => {
    const [x, w, bias, g] = [randn([2, 5, 12], 611), randn([7, 12], 612), randn([7], 613), randn([2, 5, 7], 614)];
    const [xp, wp, bp] = [x, w, bias].map((t) => T.param(toTensor(t)));
    const out = T.matmul(T.cast(xp, 'f16'), T.transpose(wp), { bias: bp, dtype: 'f16' });
    assert.is(out.dtype, 'f16');
    T.backward(out, T.Tensor.from(roundHalf(g.data), g.shape, 'f16'));
    assert.equal([xp, wp, bp].map((p) => p.grad!.dtype), ['f32', 'f32', 'f32']);
    const [xr, gr] = [R.Nd.from(roundHalf(x.data), x.shape), R.Nd.from(roundHalf(g.data), g.shape)];
    const flat = (t: R.Nd) => R.reshape(t, [10, t.shape[2]]);
    // dx = g·W (f16), dW = gᵀ·x over all rows (straight into f32), db = Σ g (rounded to f16, cast up).
    assertClose(await xp.grad!.data(), R.matmul(gr, R.Nd.from(w.data, w.shape)).data, 'dx', { atol: 1e-2, rtol: 2 ** -9 });
    assertClose(await wp.grad!.data(), R.matmul(R.permute(flat(gr), [1, 0]), flat(xr)).data, 'dW', { atol: 1e-4, rtol: 1e-5 });
    assertClose(await bp.grad!.data(), R.reduce(flat(gr), [0], false, 0, (p, q) => p + q).data, 'db', { atol: 1e-2, rtol: 2 ** -9 });
    await assertThrows(() => T.matmul(T.cast(xp, 'f16'), wp), T.DTypeError, /matmul: operands are f16 and f32; pass \{ dtype \} \(the result's\) to mix them/);
    for (const t of [xp, wp, bp, out]) t.dispose();
  });

  test('a matmul in f16 inside an f32 model: forward and gradients through the casts', async () => {
    const [x, w] = [randn([5, 12], 601), randn([12, 3], 602)];
    const wp = T.param(toTensor(w));
    const out = T.cast(T.matmul(T.Tensor.from(Array.from(x.data), [5, 12], 'f16'), T.cast(wp, 'f16')), 'f32');
    const g = randn([5, 3], 603);
    T.backward(out, toTensor(g));
    const xr = R.Nd.from(roundHalf(x.data), x.shape);
    assertClose(await out.data(), R.matmul(xr, R.Nd.from(roundHalf(w.data), w.shape)).data, 'forward', { atol: 1e-2, rtol: 2e-3 });
    // d(out)/dw = xᵀ·g, computed by the backward in f16 (g rounded to f16) and cast back to f32.
    assertClose(await wp.grad!.data(), R.matmul(R.permute(xr, [1, 0]), R.Nd.from(roundHalf(g.data), g.shape)).data, 'dw', { atol: 1e-2, rtol: 2e-3 });
    for (const t of [wp, out]) t.dispose();
  });

  test('softmax, logSoftmax and layerNorm read f16 rows, keep their statistics in f32, store f16 (every row path)', async () => {
    const half = (x: R.Nd) => R.Nd.from(roundHalf(x.data), x.shape);
    const up = (x: R.Nd) => T.Tensor.from(Array.from(x.data), x.shape, 'f16');
    const tol = { atol: 2e-3, rtol: 2 ** -9 }; // an f16 result: about one rounding
    const paths = rowLanes(1028, 4) === null ? (['thread'] as const) : (['thread', 'subgroup', 'registers'] as const);
    for (const path of paths) {
      for (const [i, shape] of [[7], [3, 33], [5, 64], [13, 256], [3, 1028]].entries()) {
        const D = shape[shape.length - 1];
        const x = half(randn(shape, 700 + i, 3));
        const soft = softmaxRaw(up(x), false, path);
        assert.is(soft.dtype, 'f16');
        assertClose(await soft.data(), R.softmax(x).data, `softmax ${shape} (${path})`, tol);
        assertClose(await softmaxRaw(up(x), true, path).data(), R.logSoftmax(x).data, `logSoftmax ${shape} (${path})`, { atol: 1e-2, rtol: 2 ** -9 });
        const [w, b] = [half(randn([D], 720 + i)), half(randn([D], 740 + i))];
        const want = R.layerNorm(x, w, b, 1e-5).data;
        const f32Params = layerNormRaw(up(x), toTensor(w), toTensor(b), 1e-5, path);
        assert.equal([f32Params.y.dtype, f32Params.mean.dtype], ['f16', 'f32']);
        assertClose(await f32Params.y.data(), want, `layerNorm ${shape}, f32 weights (${path})`, { atol: 1e-2, rtol: 2 ** -9 });
        assertClose(await layerNormRaw(up(x), up(w), up(b), 1e-5, path).y.data(), want, `layerNorm ${shape}, f16 weights (${path})`, { atol: 1e-2, rtol: 2 ** -9 });
      }
    }
  });

  test('fused attention forward on f16 q, k, v: f32 scores and online softmax, f16 output (thread and subgroup rows)', async () => {
    const half = (x: R.Nd) => R.Nd.from(roundHalf(x.data), x.shape);
    const up = (x: R.Nd) => T.Tensor.from(Array.from(x.data), x.shape, 'f16');
    // [B, L, S, H, D, causal]: head widths 5 and 16 take a thread per row, 64 a subgroup per row where one fits.
    const shapes: [number, number, number, number, number, boolean][] = [[1, 1, 1, 1, 5, false], [2, 7, 7, 3, 5, true], [3, 17, 9, 2, 16, false], [2, 13, 13, 2, 64, true]];
    let seed = 800;
    for (const [B, L, S, H, D, causal] of shapes) {
      const [q, k, v] = [half(randn([B, L, H, D], seed++)), half(randn([B, S, H, D], seed++)), half(randn([B, S, H, D], seed++))];
      const got = T.attention(up(q), up(k), up(v), { causal });
      assert.equal([got.dtype, ...got.shape], ['f16', B, L, H, D]);
      assertClose(await got.data(), R.attention(q, k, v, causal).data, `B ${B}, L ${L}, S ${S}, ${H} × ${D}${causal ? ', causal' : ''}`, { atol: 2e-3, rtol: 2 ** -9 });
      got.dispose();
    }
    await assertThrows(() => T.attention(up(randn([1, 2, 1, 4], 1)), toTensor(randn([1, 2, 1, 4], 2)), up(randn([1, 2, 1, 4], 3))), T.DTypeError, /attention: q, k and v must all be f32 or all f16, got f16, f32, f16/);
  });

  test('fused attention backward on f16: f32 scores, δ and sums, dq, dk, dv rounded once (thread and subgroup rows, packed QKV)', async () => {
    const up = (x: R.Nd, dtype: 'f32' | 'f16') => T.Tensor.from(roundHalf(x.data), x.shape, dtype);
    // [B, L, S, H, D, causal]; the f16 gradients are compared with the f32 kernels' on the same (f16-exact) inputs.
    const shapes: [number, number, number, number, number, boolean][] = [[1, 1, 1, 1, 5, false], [2, 7, 7, 3, 5, true], [3, 9, 17, 2, 16, false], [2, 13, 13, 2, 64, true]];
    let seed = 900;
    for (const [B, L, S, H, D, causal] of shapes) {
      const xs = [randn([B, L, H, D], seed++), randn([B, S, H, D], seed++), randn([B, S, H, D], seed++), randn([B, L, H, D], seed++)];
      const grads = [];
      for (const dtype of ['f16', 'f32'] as const) {
        const [q, k, v, g] = xs.map((x) => up(x, dtype));
        const saved = attentionForward(q, k, v, { causal });
        const got = attentionBackward(g, saved, [true, true, true]);
        assert.equal(got.map((t) => t!.dtype), [dtype, dtype, dtype]);
        grads.push(await Promise.all(got.map((t) => t!.data())));
        for (const t of [q, k, v, g, saved.q, saved.k, saved.v, saved.o, saved.lse, ...got]) t!.dispose();
      }
      const label = `B ${B}, L ${L}, S ${S}, ${H} × ${D}${causal ? ', causal' : ''}`;
      for (const [n, name] of ['dq', 'dk', 'dv'].entries()) assertClose(grads[0][n], grads[1][n], `${label} ${name}`, { atol: 1e-2, rtol: 2 ** -8 });
      if (L !== S) continue;
      // The packed self-attention path reads Q, K, V out of one projection and writes d(qkv) in place.
      const packed = R.concat([0, 1, 2].map((n) => R.reshape(xs[n], [B, L, H * D])), 2);
      const dqkv = [];
      for (const dtype of ['f16', 'f32'] as const) {
        const qkv = up(packed, dtype);
        const g = up(R.reshape(xs[3], [B, L, H * D]), dtype);
        const { out, saved } = selfAttentionForward(qkv, H, { causal });
        const d = selfAttentionBackward(g, saved);
        assert.equal(d.dtype, dtype);
        dqkv.push(await d.data());
        for (const t of [qkv, g, out, saved.q, saved.k, saved.v, saved.o, saved.lse, d]) t.dispose();
      }
      assertClose(dqkv[0], dqkv[1], `${label} packed d(qkv)`, { atol: 1e-2, rtol: 2 ** -8 });
    }
  });

  test('cross-entropy on f16 logits: read as f32, an f32 loss; dlogits rounded once to f16 (vec4 and scalar rows)', async () => {
    for (const [N, C] of [[5, 7], [6, 12], [1, 1]]) {
      const x = R.Nd.from(roundHalf(randn([N, C], 1100 + C).data), [N, C]);
      const labels = Array.from({ length: N }, (_, i) => (i * 5) % C);
      const logits = T.Tensor.from(Array.from(x.data), [N, C], 'f16');
      const lab = T.Tensor.from(Int32Array.from(labels));
      const loss = crossEntropyRaw(logits, lab);
      assert.equal(loss.dtype, 'f32');
      assertClose(await loss.data(), R.crossEntropyPerRow(x, labels).data, `loss [${N}, ${C}]`, { atol: 1e-5, rtol: 1e-5 });
      const g = toTensor(randn([N], 1200 + C));
      const dx = crossEntropyBackwardRaw(g, logits, lab);
      assert.equal(dx.dtype, 'f16');
      // d/dx of g · (logsumexp(x) − x[label]) = g · (softmax(x) − onehot(label)).
      const gv = await g.data();
      const want = R.rows(x, (row, r) => {
        const m = Math.max(...row);
        const e = Array.from(row, (v) => Math.exp(v - m));
        const z = e.reduce((a, b) => a + b, 0);
        return e.map((v, j) => gv[r] * (v / z - (j === labels[r] ? 1 : 0)));
      });
      assertClose(await dx.data(), want.data, `dlogits [${N}, ${C}]`, { atol: 1e-3, rtol: 2 ** -10 });
      for (const t of [logits, lab, loss, g, dx]) t.dispose();
    }
    const logits = T.Tensor.from([1, 2], [1, 2], 'f16');
    const lab = T.Tensor.from(Int32Array.from([0]));
    const g16 = T.Tensor.from([1], [1], 'f16');
    await assertThrows(() => crossEntropyBackwardRaw(g16, logits, lab), T.DTypeError, /crossEntropyBackward: the loss gradient must be f32 \(the loss is\), got f16/);
    for (const t of [logits, lab, g16]) t.dispose();
  });

  test('convolution and pooling on f16: im2col, col2im and the pools read f32, sum in f32, round once (odd shapes, strides, padding)', async () => {
    const half = (x: R.Nd) => R.Nd.from(roundHalf(x.data), x.shape);
    // [N, C, H, W, O, k, stride, padding]: a 3×3 conv with padding, a strided patch conv (ViT's), a 1×1 conv.
    const convs = [[2, 3, 7, 5, 4, 3, 1, 1], [1, 3, 9, 9, 5, 3, 3, 0], [2, 5, 3, 4, 3, 1, 1, 0]];
    let seed = 1300;
    for (const [N, C, H, W, O, k, stride, padding] of convs) {
      const label = `conv ${k}×${k} /${stride} pad ${padding} on [${N}, ${C}, ${H}, ${W}]`;
      const [x, w] = [half(randn([N, C, H, W], seed++)), half(randn([O, C, k, k], seed++))];
      const [xp, wp] = [T.param(toTensor(x)), T.param(toTensor(w))];
      const y = T.conv2d(T.cast(xp, 'f16'), T.cast(wp, 'f16'), { stride, padding });
      assert.equal(y.dtype, 'f16');
      assertClose(await y.data(), R.conv2d(x, w, stride, padding).data, label, { atol: 1e-2, rtol: 2 ** -9 });
      const gy = half(randn([...y.shape], seed++));
      T.backward(T.sum(T.mul(T.cast(y, 'f32'), toTensor(gy))));
      // The same gradients from the f32 path (f16-exact inputs): dx passes through col2im, dw through the matmul.
      const [xr, wr] = [T.param(toTensor(x)), T.param(toTensor(w))];
      T.backward(T.sum(T.mul(T.conv2d(xr, wr, { stride, padding }), toTensor(gy))));
      assertClose(await xp.grad!.data(), await xr.grad!.data(), `${label} dx`, { atol: 3e-2, rtol: 2 ** -8 });
      assertClose(await wp.grad!.data(), await wr.grad!.data(), `${label} dw`, { atol: 6e-2, rtol: 2 ** -8 });
      for (const t of [xp, wp, xr, wr, y]) t.dispose();
    }
    const x = half(randn([2, 3, 7, 6], seed++));
    const pools: [string, (t: T.Tensor) => T.Tensor, R.Nd][] = [
      ['avg 3 /2 pad 1', (t) => T.avgPool2d(t, 3, { stride: 2, padding: 1 }), R.pool2d(x, 'avg', 3, 2, 1, true)],
      ['max 2', (t) => T.maxPool2d(t, 2), R.pool2d(x, 'max', 2, 2, 0, false)],
      ['adaptive [3, 4]', (t) => T.adaptiveAvgPool2d(t, [3, 4]), R.pool2d(x, 'adaptive', 1, 1, 0, false, [3, 4])],
    ];
    for (const [label, pool, want] of pools) {
      const [p16, p32] = [T.param(toTensor(x)), T.param(toTensor(x))];
      const y = pool(T.cast(p16, 'f16'));
      assert.equal(y.dtype, 'f16');
      assertClose(await y.data(), want.data, label, { atol: 1e-3, rtol: 2 ** -10 });
      const gy = half(randn([...y.shape], seed++));
      T.backward(T.sum(T.mul(T.cast(y, 'f32'), toTensor(gy))));
      T.backward(T.sum(T.mul(pool(p32), toTensor(gy))));
      assertClose(await p16.grad!.data(), await p32.grad!.data(), `${label} backward`, { atol: 1e-3, rtol: 2 ** -10 });
      for (const t of [p16, p32, y]) t.dispose();
    }
  });

  test('reductions on f16: read as f32, accumulated in f32, one rounding (rows, columns, permuted axes, split sums)', async () => {
    const half = (x: R.Nd) => R.Nd.from(roundHalf(x.data), x.shape);
    const up = (x: R.Nd) => T.Tensor.from(Array.from(x.data), x.shape, 'f16');
    // [shape, axes]: last axis, first axis (columns), non-adjacent axes (a permuted copy), and a full sum long
    // enough to take the two-pass split (its partials stay f32).
    const cases: [number[], number[]][] = [[[7, 33], [1]], [[33, 5], [0]], [[3, 4, 5], [0, 2]], [[4099], [0]], [[9, 1031], [0, 1]]];
    let seed = 900;
    for (const [shape, axes] of cases) {
      const x = half(randn(shape, seed++, 2));
      const label = `${shape} over ${axes}`;
      const s = T.sum(up(x), axes);
      assert.is(s.dtype, 'f16');
      const want = R.reduce(x, axes, false, 0, (a, v) => a + v);
      // f32 accumulation, then one rounding: the error is the rounding of the result, however long the sum.
      assertClose(await s.data(), want.data, `sum ${label}`, { atol: 1e-3, rtol: 2 ** -10 });
      assertClose(await T.mean(up(x), axes).data(), R.map(want, (v) => v / axes.reduce((n, a) => n * shape[a], 1)).data, `mean ${label}`, { atol: 1e-3, rtol: 2 ** -10 });
      assert.equal(Array.from(await T.max(up(x), axes).data()), Array.from(R.reduce(x, axes, false, -Infinity, Math.max).data), `max ${label} (exact: a value of x)`);
      assert.equal(Array.from(await T.min(up(x), axes).data()), Array.from(R.reduce(x, axes, false, Infinity, Math.min).data), `min ${label}`);
    }
    const x = half(randn([5, 9], 950));
    assert.equal(Array.from(await T.argmax(up(x), 1).data()), Array.from(R.argReduce(x, 1, (a, b) => a > b).data), 'argmax (i32 indices)');
  });

  test('gradients through f16 reductions and broadcasts (sum, max, a broadcast bias) reach f32 parameters', async () => {
    const x = randn([3, 4], 960);
    const p = T.param(toTensor(x));
    const bias = T.param(T.Tensor.from([0.5, -1, 2, 0.25], [4]));
    const h = T.add(T.cast(p, 'f16'), T.cast(bias, 'f16')); // the bias gradient is summed over rows in f16
    const loss = T.add(T.sum(T.cast(T.sum(h, 1), 'f32')), T.sum(T.cast(T.max(h, 0), 'f32')));
    T.backward(loss);
    const xb = R.Nd.from(roundHalf(R.zip([x, R.Nd.from([0.5, -1, 2, 0.25], [4])], (a, b) => a + b).data), [3, 4]);
    const argmaxRows = R.argReduce(R.permute(xb, [1, 0]), 1, (a, b) => a > b).data; // per column, the row of its largest value
    const want = Array.from({ length: 12 }, (_, i) => 1 + (argmaxRows[i % 4] === Math.floor(i / 4) ? 1 : 0));
    assert.equal(Array.from(await p.grad!.data()), want, 'x: 1 from the sum, +1 where the column max was');
    assert.equal(Array.from(await bias.grad!.data()), [4, 4, 4, 4], 'bias: summed over the 3 rows (+1 from each max)');
    for (const t of [p, bias, loss]) t.dispose();
  });

  test('gathers on f16 copy exactly (embedding, index_select on an inner axis); the scatter-add backward sums in f32', async () => {
    const table = randn([11, 6], 970);
    const rows = roundHalf(table.data);
    const ids = [3, 0, 10, 3, 7, 3, 5];
    const emb = T.embedding(T.Tensor.from(Array.from(table.data), [11, 6], 'f16'), T.Tensor.from(Int32Array.from(ids), [7]));
    assert.equal([emb.dtype, ...emb.shape], ['f16', 7, 6]);
    assert.equal(Array.from(await emb.data()), ids.flatMap((r) => rows.slice(r * 6, r * 6 + 6)));
    const cols = T.indexSelect(T.Tensor.from(Array.from(table.data), [11, 6], 'f16'), 1, T.Tensor.from(Int32Array.from([5, 0, 5])));
    assert.equal(Array.from(await cols.data()), Array.from({ length: 33 }, (_, i) => rows[Math.floor(i / 3) * 6 + [5, 0, 5][i % 3]]));

    const p = T.param(toTensor(table));
    const g = randn([7, 6], 971, 3);
    const out = T.cast(T.embedding(T.cast(p, 'f16'), T.Tensor.from(Int32Array.from(ids), [7])), 'f32');
    T.backward(out, toTensor(g));
    const gh = roundHalf(g.data); // the gradient reaches the gather in f16
    const want = new Array(66).fill(0);
    ids.forEach((r, j) => { for (let c = 0; c < 6; c++) want[r * 6 + c] += gh[j * 6 + c]; });
    // Row 3 sums three rows of g: summed in f32, one rounding to f16 at the end.
    assertClose(await p.grad!.data(), roundHalf(want), 'embedding gradient', { atol: 1e-6, rtol: 1e-6 });
    for (const t of [emb, cols, p, out]) t.dispose();
  });

  test('softmax and logSoftmax backwards on f16: sums and arithmetic in f32, dx rounded once', async () => {
    for (const [i, shape] of [[3, 7], [2, 64], [5, 33]].entries()) {
      for (const log of [false, true]) {
        const x = R.Nd.from(roundHalf(randn(shape, 980 + i, 2).data), shape);
        const g = R.Nd.from(roundHalf(randn(shape, 990 + i).data), shape);
        const p = T.param(toTensor(x));
        const h = T.cast(p, 'f16');
        const y = (log ? T.logSoftmax : T.softmax)(h);
        const out = T.cast(y, 'f32');
        T.backward(out, toTensor(g));
        // dx from the float64 softmax of the same (rounded) x and g: the kernel differs by f16 roundings of y and dx.
        const ys = log ? R.logSoftmax(x) : R.softmax(x);
        const D = shape[1];
        const want = R.rows(ys, (row, r) => {
          const gr = g.data.subarray(r * D, r * D + D);
          const s = log ? gr.reduce((a, v) => a + v, 0) : gr.reduce((a, v, j) => a + v * row[j], 0);
          return Array.from(row, (yv, j) => (log ? gr[j] - Math.exp(yv) * s : yv * (gr[j] - s)));
        });
        assertClose(await p.grad!.data(), want.data, `${log ? 'logSoftmax' : 'softmax'} backward ${shape}`, { atol: 4e-3, rtol: 2 ** -8 });
        for (const t of [p, h, y, out]) t.dispose();
      }
    }
  });

  test('layerNorm backward on f16 (f32 or f16 weights): sums in f32, dx, dw and db rounded once to their dtypes', async () => {
    for (const [i, [N, D]] of [[3, 7], [4, 64], [5, 33]].entries()) {
      for (const halfWeights of [false, true]) {
        const x = R.Nd.from(roundHalf(randn([N, D], 1000 + i, 2).data), [N, D]);
        const g = R.Nd.from(roundHalf(randn([N, D], 1010 + i).data), [N, D]);
        const wv = roundHalf(randn([D], 1020 + i).data);
        const [px, pw, pb] = [T.param(toTensor(x)), T.param(T.Tensor.from(wv, [D])), T.param(T.zeros([D]))];
        const weights = halfWeights ? [T.cast(pw, 'f16'), T.cast(pb, 'f16')] : [pw, pb];
        const y = T.layerNorm(T.cast(px, 'f16'), weights[0], weights[1]);
        assert.is(y.dtype, 'f16');
        const out = T.cast(y, 'f32');
        T.backward(out, toTensor(g));
        // float64: x̂ = (x − μ)·rstd, ĝ = g·w, dx = rstd·(ĝ − mean ĝ − x̂·mean(ĝ·x̂)), dw = Σ g·x̂, db = Σ g.
        const dx: number[] = [];
        const [dw, db] = [new Array(D).fill(0), new Array(D).fill(0)];
        for (let r = 0; r < N; r++) {
          const row = Array.from(x.data.subarray(r * D, r * D + D));
          const gr = Array.from(g.data.subarray(r * D, r * D + D));
          const mu = row.reduce((a, v) => a + v, 0) / D;
          const rstd = 1 / Math.sqrt(row.reduce((a, v) => a + (v - mu) ** 2, 0) / D + 1e-5);
          const xh = row.map((v) => (v - mu) * rstd);
          const gh = gr.map((v, j) => v * wv[j]);
          const mg = gh.reduce((a, v) => a + v, 0) / D;
          const mgx = gh.reduce((a, v, j) => a + v * xh[j], 0) / D;
          dx.push(...gh.map((v, j) => rstd * (v - mg - xh[j] * mgx)));
          gr.forEach((v, j) => ((dw[j] += v * xh[j]), (db[j] += v)));
        }
        const label = `[${N}, ${D}], ${halfWeights ? 'f16' : 'f32'} weights`;
        assertClose(await px.grad!.data(), dx, `dx ${label}`, { atol: 1e-2, rtol: 2 ** -8 });
        assertClose(await pw.grad!.data(), dw, `dw ${label}`, { atol: 1e-2, rtol: 2 ** -8 });
        assertClose(await pb.grad!.data(), db, `db ${label}`, { atol: 1e-3, rtol: 2 ** -9 });
        for (const t of [px, pw, pb, y, out, ...weights]) t.dispose();
      }
    }
  });

  test('unfused attention (batched matmuls, f32 causal mask, softmax) runs in f16 forward and backward', async () => {
    const [B, L, H, D] = [2, 6, 2, 4];
    const xs = [0, 1, 2].map((n) => R.Nd.from(roundHalf(randn([B, L, H * D], 1030 + n).data), [B, L, H * D]));
    const ps = xs.map((x) => T.param(toTensor(x)));
    const out = T.cast(attendUnfused(T.cast(ps[0], 'f16'), T.cast(ps[1], 'f16'), T.cast(ps[2], 'f16'), H, causalMask(L)), 'f32');
    const heads = (x: R.Nd) => R.reshape(x, [B, L, H, D]);
    assertClose(await out.data(), R.attention(heads(xs[0]), heads(xs[1]), heads(xs[2]), true).data, 'forward', { atol: 4e-3, rtol: 2 ** -8 });
    T.backward(T.sum(T.mul(out, out)));
    // The same gradients through the f32 fused path, within f16 precision.
    const fs = xs.map((x) => T.param(toTensor(x)));
    const ref = T.reshape(T.attention(...(fs.map((f) => T.reshape(f, [B, L, H, D])) as [T.Tensor, T.Tensor, T.Tensor]), { causal: true }), [B, L, H * D]);
    T.backward(T.sum(T.mul(ref, ref)));
    for (const [n, name] of ['dq', 'dk', 'dv'].entries()) assertClose(await ps[n].grad!.data(), await fs[n].grad!.data(), name, { atol: 2e-2, rtol: 2 ** -7 });
    for (const t of [...ps, ...fs, out, ref]) t.dispose();
  });

  test('mixed dtypes and what does not take f16 (batch norm) say so, naming the op', async () => {
    const h = T.Tensor.from([1, 2, 3, 4], [2, 2], 'f16');
    const img = T.Tensor.from([1, 2, 3, 4], [1, 1, 2, 2], 'f16');
    await assertThrows(() => T.batchNorm2dTrain(img, T.ones([1]), T.zeros([1]), 1e-5), T.DTypeError, /expects f32 input, got f16/);
    img.dispose();
    const kv = T.Tensor.from(Array.from(randn([1, 3, 1, 4], 6).data), [1, 3, 1, 4], 'f16');
    const saved = attentionForward(kv, kv, kv);
    await assertThrows(() => attentionBackward(toTensor(randn([1, 3, 1, 4], 7)), saved, [true, true, true]), T.DTypeError, /attentionBackward: the output and its gradient must share a dtype, got f16 and f32/);
    for (const t of [kv, saved.q, saved.k, saved.v, saved.o, saved.lse]) t.dispose();
    // The f16 backwards take an output and its gradient of one dtype, and say so when they differ.
    const g32 = T.ones([2, 2]);
    await assertThrows(() => softmaxBackwardRaw(h, g32, false), T.DTypeError, /softmaxBackward: the output and its gradient must share a dtype, got f16 and f32/);
    const stats = T.zeros([2]);
    await assertThrows(() => layerNormBackwardRaw(g32, h, T.ones([2]), stats, stats), T.DTypeError, /layerNormBackward: the input and its gradient must share a dtype, got f16 and f32/);
    for (const t of [g32, stats]) t.dispose();
    await assertThrows(() => T.param(h), T.TensorError, /only f32 tensors can require grad/);
  });
}

test.run();
