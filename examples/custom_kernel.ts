// Your own kernel, end to end: GELU in its tanh form (GPT-2's, open_clip's `gelu_tanh`) as one fused WGSL
// kernel with its backward as a second kernel, made a differentiable op by T.customOp, then
//   1. validated against a float64 reference on an odd size,
//   2. gradient-checked: its backward against central differences of the float64 function,
//   3. timed with the package's bench harness against the same function composed of built-in ops (seven
//      elementwise kernels forward, their rules backward), forward alone and forward + backward, interleaved.
//
//   node scripts/run.mjs examples/custom_kernel.ts [--size 1048576]
//
// From the installed package the imports are 'clipgpu' and 'clipgpu/bench'; nothing else changes.
import { parseArgs } from 'node:util';
import * as T from '../ops/index.ts';
import { time, timeInterleaved, validate } from '../bench/public.ts';

const { values } = parseArgs({ options: { size: { type: 'string', default: String(1 << 20) } } });
const size = Number(values.size);
if (!Number.isInteger(size) || size < 1) {
  console.error(`custom_kernel: --size must be a positive integer, got '${values.size}'`);
  process.exit(2);
}

const C = 0.7978845608028654; // √(2/π)
const K = 0.044715;
/** GELU's tanh argument, shared by both kernels' WGSL. */
const INNER = `fn inner(v: f32) -> f32 { return ${C} * (v + ${K} * v * v * v); }`;

/** dGELU/dx · grad, elementwise: the backward kernel. */
const geluTanhBackward = T.customOp({
  name: 'gelu_tanh_backward',
  inputs: ['x', 'grad'],
  prelude: INNER,
  body: `let v = load_x(i);
  let t = tanh(inner(v));
  let dinner = ${C} * (1.0 + 3.0 * ${K} * v * v);
  store(i, load_grad(i) * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * dinner));`,
});

/** 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))) in one kernel, differentiable through the kernel above. */
const geluTanh = T.customOp({
  name: 'gelu_tanh',
  inputs: ['x'],
  prelude: INNER,
  body: 'let v = load_x(i); store(i, 0.5 * v * (1.0 + tanh(inner(v))));',
  backward: (grad, { inputs: { x } }) => ({ x: geluTanhBackward({ x, grad }) }),
});

/** The same function from built-in ops, the reference for speed. */
const composed = (x: T.Tensor) => T.mul(T.mul(x, 0.5), T.add(T.tanh(T.mul(T.add(x, T.mul(T.pow(x, 3), K)), C)), 1));
/** The float64 reference for values. */
const reference = (v: number) => 0.5 * v * (1 + Math.tanh(C * (v + K * v ** 3)));

await T.init();
console.log(`adapter: ${T.gpu().name}`);

// 1. Values: an odd size, so a partial last workgroup is exercised.
const probe = T.keep(T.randNormal([1001], 0, 2));
const inputs = await probe.data();
const outputs = await geluTanh({ x: probe }).data();
validate('gelu_tanh', Array.from(inputs, (v, i) => ({ got: outputs[i], want: reference(v) })), 1e-5);
console.log('forward: matches the float64 reference (1001 values, tolerance 1e-5)');

// 2. Gradients: the backward kernel against central differences of the float64 function.
const x = T.param(T.randNormal([257], 0, 2));
T.backward(T.sum(geluTanh({ x })));
const analytic = await x.grad!.data();
const points = await x.data();
const h = 1e-6;
validate('gelu_tanh backward', Array.from(points, (v, i) => ({ got: analytic[i], want: (reference(v + h) - reference(v - h)) / (2 * h) })), 1e-4);
x.dispose();
console.log('backward: matches central differences of the float64 function (257 points, tolerance 1e-4)');

// 3. Speed, against the composed reference on the same inputs, timed interleaved.
const big = T.param(T.randNormal([size]));
const seed = T.keep(T.ones([size]));
const forward = (f: (x: T.Tensor) => T.Tensor) => () => T.noGrad(() => f(big));
const training = (f: (x: T.Tensor) => T.Tensor) => () =>
  T.tidy(() => {
    T.backward(f(big), seed);
    const g = big.grad!;
    big.grad = null;
    return g;
  });
const report = (what: string, [ours, theirs]: { ms: number; gpuMs: number | null }[]) =>
  console.log(`${what}: fused ${ours.ms.toFixed(3)} ms, composed ${theirs.ms.toFixed(3)} ms (${(theirs.ms / ours.ms).toFixed(2)}× faster)`);
console.log(`timing on ${size} elements (median per launch)`);
report('forward           ', await timeInterleaved([forward((t) => geluTanh({ x: t })), forward(composed)]));
report('forward + backward', await timeInterleaved([training((t) => geluTanh({ x: t })), training(composed)]));
const alone = await time(forward((t) => geluTanh({ x: t })));
console.log(`gelu_tanh alone: ${alone.ms.toFixed(3)} ms wall, ${alone.gpuMs === null ? 'no GPU timestamps here' : `${alone.gpuMs.toFixed(3)} ms GPU`}`);
T.closeGpu();
