// What a user's program does with the installed package, shared by the Node script and the browser page of
// the consumer test; only the package's public entries are imported.
import * as T from 'clipgpu';
import { Linear, ReLU, SGD, Sequential } from 'clipgpu/nn';
import { SINGLE_TEMPLATE, l2normalize, textEncoderFor, zeroShotClassifier, zeroShotProbabilities } from 'clipgpu/clip';

/** Trains a small MLP to separate two Gaussian blobs; the losses of its first and last steps. */
export async function trainMlp(steps = 30) {
  T.manualSeed(0);
  const n = 64;
  const labels = Int32Array.from({ length: n }, (_, i) => i % 2);
  const x = T.keep(T.add(T.randNormal([n, 2], 0, 0.5), T.mul(T.Tensor.from(Float32Array.from(labels, (c) => 2 * c - 1), [n, 1]), 1.5)));
  const y = T.keep(T.Tensor.from(labels, [n], 'i32'));
  const model = new Sequential(new Linear(2, 16), new ReLU(), new Linear(16, 2));
  const optimizer = new SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
  const losses = [];
  for (let step = 0; step < steps; step++) {
    const loss = T.tidy(() => {
      const l = T.crossEntropy(model.forward(x), y);
      T.backward(l);
      return l;
    });
    optimizer.step();
    optimizer.zeroGrad();
    if (step === 0 || step === steps - 1) losses.push(await loss.item());
    loss.dispose();
  }
  return { first: losses[0], last: losses[1] };
}

/** A WGSL kernel of one's own (T.customOp): x² and its gradient at x = 1, 2, 3. */
export async function customKernel() {
  const square = T.customOp({
    name: 'square',
    inputs: ['x'],
    body: 'let v = load_x(i); store(i, v * v);',
    backward: (g, { inputs: { x } }) => ({ x: T.mul(g, T.mul(x, 2)) }),
  });
  const x = T.param(T.Tensor.from([1, 2, 3]));
  const y = square({ x });
  T.backward(T.sum(y));
  const result = { y: Array.from(await y.data()), grad: Array.from(await x.grad.data()) };
  for (const t of [x, y]) t.dispose();
  return result;
}

/** Zero-shot class probabilities [images × labels] of `count` random images with a CLIP model and tokenizer. */
export async function zeroShot(model, tokenizer, labels, count = 2) {
  model.eval();
  const n = model.config.imageResolution;
  const classifier = zeroShotClassifier(textEncoderFor(model, tokenizer), labels, SINGLE_TEMPLATE);
  const features = T.noGrad(() => T.tidy(() => l2normalize(model.encodeImage(T.randNormal([count, 3, n, n])))));
  const probabilities = zeroShotProbabilities(features, classifier);
  const values = Array.from(await probabilities.data());
  for (const t of [classifier, features, probabilities]) t.dispose();
  return values;
}
