// Training on your own image–caption CSV. This example first writes a small dataset in the expected format
// (PNG files plus pairs.csv with `filepath,caption` rows, paths relative to the CSV), then trains on it exactly
// as `npm run train -- --train-data <dir>/pairs.csv` would:
//
//   node scripts/run.mjs examples/train_csv.ts [--dir /tmp/clip-csv-demo] [--images 600] [--steps 300]
//
// Replace the folder with your own: any PNG/JPEG sizes work (they are resized and centre-cropped, with
// RandomResizedCrop during training); bad rows and unreadable images are reported and skipped.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as T from '../ops/index.ts';
import { CONFIGS } from '../clip/config.ts';
import { SHAPE_WORLD, example, render } from '../clip/data/scenes.ts';
import { writePng } from '../clip/io/images.ts';
import { denormalize } from '../clip/preprocess.ts';
import { train } from '../clip/train.ts';

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: '/tmp/clip-csv-demo' },
    images: { type: 'string', default: '600' },
    steps: { type: 'string', default: '300' },
  },
});
const dir = values.dir!;
const count = Number(values.images);

// 1. A dataset on disk: 48×48 PNGs of scenes and a CSV naming them with their captions.
const csv = join(dir, 'pairs.csv');
if (!existsSync(csv)) {
  mkdirSync(join(dir, 'images'), { recursive: true });
  const n = 48;
  const rows = ['filepath,caption'];
  const chw = new Float32Array(3 * n * n);
  for (let i = 0; i < count; i++) {
    const ex = example(SHAPE_WORLD, 11, i);
    render(SHAPE_WORLD, ex, 'train', n, chw);
    writePng(join(dir, 'images', `${i}.png`), denormalize(chw, n, n));
    rows.push(`images/${i}.png,"${ex.caption}"`);
  }
  writeFileSync(csv, `${rows.join('\n')}\n`);
  console.log(`wrote ${count} images and ${csv}`);
}

// 2. Training on it: the same function `npm run train` calls.
await T.init();
const result = await train({
  config: CONFIGS['ViT-scenes'],
  trainData: csv,
  batchSize: 32,
  steps: Number(values.steps),
  lr: 2e-3,
  weightDecay: 0.1,
  warmup: 30,
  seed: 0,
  out: join(dir, 'run'),
  evalEvery: 100,
  saveEvery: 100,
  resume: false,
  clipGrad: 0,
  accumFreq: 1,
  vocabSize: 600,
  log: console.log,
});
const r = result!.retrieval; // evaluation is on (evalEvery), so there is a result
console.log(
  r
    ? `image → text R@1 ${r.imageToTextR1.toFixed(2)}, text → image R@1 ${r.textToImageR1.toFixed(2)} on ${r.pairs} held-back pairs`
    : 'retrieval skipped: no held-back image could be decoded',
);
console.log(`checkpoint, model, vocabulary and plots in ${join(dir, 'run')}`);
T.closeGpu();
