// Zero-shot classification of your own images with a trained checkpoint, written out with the library API
// (the same steps as `npm run zeroshot`):
//
//   node scripts/run.mjs examples/zeroshot_images.ts --run runs/scenes --labels "red circle,blue square" a.png b.jpg
//
// --run is a training output folder (model.safetensors + vocab.txt.gz). Without image paths, four scenes are
// drawn, saved as PNGs in a temporary folder and classified among all colour–shape classes. --f16 loads the
// weights in half precision (half the bytes, f16 compute; needs the WebGPU feature shader-f16).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as T from '../ops/index.ts';
import { SHAPE_WORLD, compositionClasses, example, render } from '../clip/data/scenes.ts';
import { defaultTemplates, textEncoderFor, zeroShotClassifier, zeroShotProbabilities } from '../clip/evaluate.ts';
import { l2normalize } from '../clip/model.ts';
import { readImage, writePng } from '../clip/io/images.ts';
import { denormalize, preprocess } from '../clip/preprocess.ts';
import { loadClip, tokenizerFor } from '../clip/io/weights.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    run: { type: 'string', default: 'runs/scenes' },
    labels: { type: 'string' },
    f16: { type: 'boolean', default: false },
  },
});

/** Draws scene `i` (a held-out colour–shape pair) at 128×128 and saves it as a PNG. */
function demoImage(dir: string, i: number): string {
  const n = 128;
  const ex = example(SHAPE_WORLD, 7, i, { pairs: 'heldOut', split: 'test', single: true });
  const chw = new Float32Array(3 * n * n);
  render(SHAPE_WORLD, ex, 'test', n, chw);
  const path = join(dir, `${i}-${ex.objects[0].size}-${ex.objects[0].color}-${ex.objects[0].kind}.png`);
  writePng(path, denormalize(chw, n, n));
  return path;
}

const demoDir = () => mkdtempSync(join(tmpdir(), 'zeroshot-'));
const images = positionals.length > 0 ? positionals : ((dir) => [0, 1, 2, 3].map((i) => demoImage(dir, i)))(demoDir());

await T.init();
// 1. The model and the vocabulary it was trained with (in f16 if asked: CLIP.half() converts the weights, and the
//    encoders then compute in f16; features are normalised, and compared, in f32).
const model = loadClip(join(values.run!, 'model.safetensors'), { precision: values.f16 ? 'f16' : 'f32' });
model.eval();
const tokenizer = tokenizerFor(join(values.run!, 'model.safetensors'), model.config.vocabSize);
// 2. One text embedding per label: the normalised mean over the prompt templates the model was evaluated
//    with during training ("{a} {}", "a photo of {a} {}", …; recorded in its metadata), or OpenAI's ensemble.
const labels = values.labels ? values.labels.split(',').map((l) => l.trim()) : model.prompts?.classes ?? compositionClasses(SHAPE_WORLD).names;
const classifier = zeroShotClassifier(textEncoderFor(model, tokenizer), labels, defaultTemplates(model));
// 3. Images through OpenAI's preprocessing (resize shorter side, centre crop, normalise), then the image tower.
const n = model.config.imageResolution;
const pixels = new Float32Array(images.length * 3 * n * n);
images.forEach((path, i) => pixels.set(preprocess(readImage(path), n), i * 3 * n * n));
const features = T.noGrad(() => T.tidy(() => l2normalize(model.encodeImage(T.Tensor.from(pixels, [images.length, 3, n, n])))));
// 4. Cosine similarities × 100, softmax over the labels.
const probs = await zeroShotProbabilities(features, classifier).data();
images.forEach((path, i) => {
  const ranked = labels.map((label, j) => ({ label, p: probs[i * labels.length + j] })).sort((a, b) => b.p - a.p);
  console.log(`${path}\n${ranked.slice(0, 3).map((r) => `  ${(100 * r.p).toFixed(1).padStart(5)}%  ${r.label}`).join('\n')}`);
});
T.closeGpu();
