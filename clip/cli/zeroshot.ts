// `npm run zeroshot -- --weights W.safetensors --image a.png [--image b.jpg …] --labels "cat,dog,…"
//  [--templates ensemble|single] [--vocab V]`: class probabilities for each image, best first. A model trained
// here has its own small vocabulary, vocab.txt.gz beside the weights, which is used when present (tokenizerFor).
import { parseArgs } from 'node:util';
import * as T from '../../ops/index.ts';
import { ENSEMBLE_TEMPLATES, SINGLE_TEMPLATE, textEncoderFor, zeroShotClassifier, zeroShotProbabilities } from '../evaluate.ts';
import { l2normalize } from '../model.ts';
import { preprocess, readImage } from '../preprocess.ts';
import { loadClip, tokenizerFor } from '../weights.ts';

const { values } = parseArgs({
  options: {
    weights: { type: 'string' },
    image: { type: 'string', multiple: true },
    labels: { type: 'string' },
    templates: { type: 'string', default: 'ensemble' },
    vocab: { type: 'string' },
  },
});
if (!values.weights || !values.image?.length || !values.labels) {
  console.error('usage: npm run zeroshot -- --weights W.safetensors --image a.png [--image b.jpg] --labels "cat,dog" [--templates ensemble|single]');
  process.exit(2);
}
const labels = values.labels.split(',').map((l) => l.trim()).filter(Boolean);
await T.init();
const model = loadClip(values.weights);
model.eval();
const n = model.config.imageResolution;
const pixels = values.image.map((path) => preprocess(readImage(path), n));
const batch = new Float32Array(pixels.length * 3 * n * n);
pixels.forEach((p, i) => batch.set(p, i * p.length));
const tokenizer = tokenizerFor(values.weights, model.config.vocabSize, values.vocab);
const classifier = zeroShotClassifier(textEncoderFor(model, tokenizer), labels, values.templates === 'single' ? SINGLE_TEMPLATE : ENSEMBLE_TEMPLATES);
const features = T.noGrad(() => T.tidy(() => l2normalize(model.encodeImage(T.Tensor.from(batch, [pixels.length, 3, n, n])))));
const probs = await zeroShotProbabilities(features, classifier).data();
values.image.forEach((path, i) => {
  const row = labels.map((label, j) => [label, probs[i * labels.length + j]] as const).sort((a, b) => b[1] - a[1]);
  console.log(path);
  for (const [label, p] of row) console.log(`  ${(100 * p).toFixed(2).padStart(6)}%  ${label}`);
});
T.closeGpu();
