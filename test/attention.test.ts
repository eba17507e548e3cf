// The fused attention kernels against the float64 reference at CLIP's real shapes and at awkward ones (head
// widths that are not multiples of 4, more keys than queries, one token), and their gradients against the
// unfused path (batched matmuls + softmax, each gradient-checked on its own) where finite differences would
// take too long.
import * as assert from 'uvu/assert';
import * as T from '../ops/index.ts';
import * as R from '../kernels/reference.ts';
import { attendUnfused, causalMask } from '../nn/attention.ts';
import { assertClose, randn, suite, toTensor } from './harness.ts';

const test = suite('attention');

/** [label, B, L, S, heads, headDim, causal] */
const SHAPES: [string, number, number, number, number, number, boolean][] = [
  ['one token', 1, 1, 1, 1, 1, false],
  ['ViT-B/32 image tokens', 2, 50, 50, 12, 64, false],
  ['text, causal', 2, 77, 77, 8, 64, true],
  ['queries ≠ keys', 3, 17, 9, 4, 16, false],
  ['head width 5, causal', 2, 7, 7, 3, 5, true],
  ['widest head', 1, 5, 5, 1, 128, false],
];

let seed = 900;
for (const [label, B, L, S, H, D, causal] of SHAPES) {
  test(`forward = float64 reference: ${label} (B ${B}, L ${L}, S ${S}, ${H} × ${D})`, async () => {
    const [q, k, v] = [randn([B, L, H, D], seed++), randn([B, S, H, D], seed++), randn([B, S, H, D], seed++)];
    const got = T.attention(toTensor(q), toTensor(k), toTensor(v), { causal });
    assert.equal(got.shape, [B, L, H, D]);
    assertClose(await got.data(), R.attention(q, k, v, causal).data, label, { atol: 2e-5, rtol: 1e-4 });
    got.dispose();
  });
}

for (const [label, B, L, , H, D, causal] of SHAPES.filter(([, , L, S]) => L === S)) {
  test(`packed self-attention gradient = unfused path's: ${label}`, async () => {
    const E = H * D;
    const qkv = T.param(toTensor(randn([B, L, 3 * E], seed++)));
    const g = toTensor(randn([B, L, E], seed++));
    const grads: Float32Array[] = [];
    for (const fused of [true, false]) {
      qkv.grad?.dispose();
      qkv.grad = null;
      const out = fused
        ? T.selfAttention(qkv, H, { causal })
        : T.tidy(() => {
            const [q, k, v] = [0, 1, 2].map((i) => T.narrow(qkv, 2, i * E, E));
            return attendUnfused(q, k, v, H, causal ? causalMask(L) : undefined);
          });
      T.backward(out, g);
      grads.push((await qkv.grad!.data()) as Float32Array);
      out.dispose();
    }
    assertClose(grads[0], grads[1], `${label} d(qkv)`, { atol: 1e-4, rtol: 1e-3 });
    qkv.dispose();
  });
}

test('bad shapes and dtypes are named', () => {
  const t = (shape: number[]) => T.zeros(shape);
  assert.throws(() => T.attention(t([2, 3, 4]), t([2, 3, 4]), t([2, 3, 4])), /q must be \[batch, tokens, heads, headDim\], got \[2, 3, 4\]/);
  assert.throws(() => T.attention(t([2, 3, 1, 4]), t([2, 5, 1, 4]), t([2, 6, 1, 4])), /k and v must both be \[2,5,1,4\]/);
  assert.throws(() => T.attention(t([1, 2, 1, 129]), t([1, 2, 1, 129]), t([1, 2, 1, 129])), /head dim 129 exceeds/);
  assert.throws(() => T.attention(T.zeros([1, 2, 1, 4], 'i32'), t([1, 2, 1, 4]), t([1, 2, 1, 4])), /q, k and v must all be f32 or all f16, got i32, f32, f32/);
  assert.throws(() => T.selfAttention(t([2, 3, 10]), 2), /qkv must be \[batch, tokens, 3 · heads · headDim\] with 2 heads, got \[2, 3, 10\]/);
});

test.run();
