// `npm run eval -- --weights runs/scenes/model.safetensors [--vocab runs/scenes/vocab.txt.gz] [--seed 0]`:
// zero-shot top-1 on held-out and seen compositions, retrieval recall, and a linear probe on frozen image
// features (the 24 colour–shape classes), for a model trained on the built-in scenes.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import * as T from '../../kernels/index.ts';
import { compositionClasses, example, render } from '../data/scenes.ts';
import { linearProbe } from '../evaluate.ts';
import { l2normalize, type CLIP } from '../model.ts';
import { Tokenizer } from '../tokenizer.ts';
import { evaluate } from '../train.ts';
import { loadClip } from '../weights.ts';

const { values } = parseArgs({ options: { weights: { type: 'string' }, vocab: { type: 'string' }, seed: { type: 'string', default: '0' } } });
if (!values.weights) {
  console.error('usage: npm run eval -- --weights runs/scenes/model.safetensors [--vocab runs/scenes/vocab.txt.gz] [--seed 0]');
  process.exit(2);
}
const seed = Number(values.seed);
await T.init();
const model = loadClip(values.weights);
const vocab = values.vocab ?? join(dirname(values.weights), 'vocab.txt.gz');
const tokenizer = existsSync(vocab) ? Tokenizer.fromFile(vocab, model.config.vocabSize) : Tokenizer.fromFile();

/** Frozen, normalised image features and class labels of single-object scenes starting at `start`. */
function probeSplit(m: CLIP, start: number, count: number) {
  const { names } = compositionClasses();
  const n = m.config.imageResolution;
  const pixels = new Float32Array(count * 3 * n * n);
  const labels = new Int32Array(count);
  for (let i = 0, k = 0; k < count; i++) {
    const ex = example(seed + 3, start + i, i % 4 === 0 ? 'heldOut' : 'train');
    if (ex.objects.length !== 1) continue;
    render(ex, n, pixels, k * 3 * n * n);
    labels[k++] = names.indexOf(`${ex.objects[0].color} ${ex.objects[0].shape}`);
  }
  return {
    features: T.keep(T.noGrad(() => T.tidy(() => l2normalize(m.encodeImage(T.Tensor.from(pixels, [count, 3, n, n])))))),
    labels: T.keep(T.Tensor.from(labels)),
  };
}

const result = await evaluate(model, tokenizer, seed);
model.eval();
const probe = await linearProbe(probeSplit(model, 0, 480), probeSplit(model, 100_000, 240), probeSplit(model, 200_000, 240), compositionClasses().names.length);
console.log(`zero-shot top-1, held-out compositions   ${(100 * result.heldOutTop1).toFixed(1)}%  (24 classes, chance 4.2%)`);
console.log(`zero-shot top-1, seen compositions       ${(100 * result.seenTop1).toFixed(1)}%`);
console.log(`retrieval image → text R@1 / R@5         ${result.imageToTextR1.toFixed(2)} / ${result.imageToTextR5.toFixed(2)}  (100 pairs)`);
console.log(`retrieval text → image R@1 / R@5         ${result.textToImageR1.toFixed(2)} / ${result.textToImageR5.toFixed(2)}`);
console.log(`linear probe top-1 (λ = ${probe.lambda})            ${(100 * probe.testAccuracy).toFixed(1)}%  (validation ${(100 * probe.validationAccuracy).toFixed(1)}%)`);
T.closeGpu();
