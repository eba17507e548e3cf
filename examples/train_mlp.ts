// The smallest end-to-end use of the engine: an MLP with two hidden ReLU layers learns to classify the points
// of three interleaved spirals, full batch, with SGD + momentum written directly on the tensor API (matmuls
// with fused bias and ReLU, crossEntropy, backward, assign under noGrad). At step 1, every 50 steps and the
// last, it prints the loss, the accuracy, steps per second and GPU memory (live and pooled).
//
//   node scripts/run.mjs examples/train_mlp.ts [--steps 400] [--hidden 64] [--lr 0.1] [--seed 0]
import { parseArgs } from 'node:util';
import * as T from '../ops/index.ts';

const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '400' },
    hidden: { type: 'string', default: '64' },
    lr: { type: 'string', default: '0.1' },
    seed: { type: 'string', default: '0' },
  },
});
const steps = Number(values.steps);
const hidden = Number(values.hidden);
const lr = Number(values.lr);
const seed = Number(values.seed);

/** Three spirals of n points each, with a little seeded noise (host-side data, uploaded once). */
function spirals(n: number, classes: number, rand: () => number): { x: Float32Array; y: Int32Array } {
  const x = new Float32Array(n * classes * 2);
  const y = new Int32Array(n * classes);
  for (let c = 0; c < classes; c++) {
    for (let i = 0; i < n; i++) {
      const r = i / n;
      const theta = (c * 2 * Math.PI) / classes + 4 * r + 0.2 * (rand() - 0.5);
      const k = c * n + i;
      x[2 * k] = r * Math.cos(theta);
      x[2 * k + 1] = r * Math.sin(theta);
      y[k] = c;
    }
  }
  return { x, y };
}

function lcg(s: number): () => number {
  let state = s >>> 0 || 1;
  return () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

await T.init();
console.log(`adapter: ${T.gpu().name}`);
T.manualSeed(seed);
const data = spirals(300, 3, lcg(seed + 1));
const n = data.y.length;
const x = T.keep(T.Tensor.from(data.x, [n, 2]));
const labels = T.keep(T.Tensor.from(data.y, [n]));

// He init (std √(2/fan-in)) for the ReLU layers, √(1/fan-in) for the logits; parameters are leaves that require grad.
const w1 = T.param(T.randNormal([2, hidden], 0, Math.sqrt(2 / 2)));
const b1 = T.param(T.zeros([hidden]));
const w2 = T.param(T.randNormal([hidden, hidden], 0, Math.sqrt(2 / hidden)));
const b2 = T.param(T.zeros([hidden]));
const w3 = T.param(T.randNormal([hidden, 3], 0, Math.sqrt(1 / hidden)));
const b3 = T.param(T.zeros([3]));
const params = [w1, b1, w2, b2, w3, b3];
const velocity = params.map((p) => T.keep(T.zerosLike(p)));

const forward = () => {
  const h1 = T.matmul(x, w1, { bias: b1, activation: 'relu' });
  const h2 = T.matmul(h1, w2, { bias: b2, activation: 'relu' });
  return T.matmul(h2, w3, { bias: b3 });
};

const start = performance.now();
for (let step = 1; step <= steps; step++) {
  const loss = T.tidy(() => {
    const l = T.crossEntropy(forward(), labels);
    T.backward(l);
    T.noGrad(() =>
      params.forEach((p, i) => {
        // SGD with momentum 0.9: v = 0.9 v + g; p = p − lr v
        T.assign(velocity[i], T.add(T.mul(velocity[i], 0.9), p.grad!));
        T.assign(p, T.sub(p, T.mul(velocity[i], lr)));
        p.grad!.dispose();
        p.grad = null;
      }),
    );
    return l;
  });
  if (step % 50 === 0 || step === 1 || step === steps) {
    const accuracy = T.noGrad(() => T.tidy(() => T.mean(T.cast(T.eq(T.argmax(forward(), -1), labels), 'f32'))));
    const [l, acc] = [await loss.item(), await accuracy.item()];
    accuracy.dispose();
    const seconds = (performance.now() - start) / 1000;
    const m = T.memory();
    console.log(
      `step ${String(step).padStart(4)}  loss ${l.toFixed(4)}  accuracy ${(100 * acc).toFixed(1)}%  ` +
        `${(step / seconds).toFixed(1)} steps/s  live ${(m.liveBytes / 1024).toFixed(0)} KiB  pooled ${(m.pooledBytes / 1024).toFixed(0)} KiB`,
    );
  }
  loss.dispose();
}
T.closeGpu();
