// A short CLIP training run in the browser: the built-in scenes, a vocabulary learned in the page, the shared
// training step; the loss must fall.
import * as assert from 'uvu/assert';
import * as T from '../../ops/index.ts';
import { AdamW, cosineWithWarmup } from '../../nn/optim.ts';
import { SHAPE_WORLD, sceneSource } from '../../clip/data/scenes.ts';
import { CLIP } from '../../clip/model.ts';
import { trainStep } from '../../clip/step.ts';
import { Tokenizer, trainBpe } from '../../clip/tokenizer.ts';
import { suite } from '../harness.ts';

const test = suite('train (browser)');

test('a tiny CLIP trained on a stream of scenes for 60 steps: the loss falls', async () => {
  const data = sceneSource(SHAPE_WORLD, 5);
  const tokenizer = new Tokenizer(trainBpe(data.corpus(400), 600));
  T.manualSeed(5);
  const config = { embedDim: 16, imageResolution: 16, visionLayers: 1, visionWidth: 64, visionPatchSize: 8, visionHeadWidth: 8, contextLength: 12, vocabSize: tokenizer.vocabSize, transformerWidth: 32, transformerHeads: 2, transformerLayers: 1 };
  const model = new CLIP(config);
  const optimizer = new AdamW(model.parameters(), { lr: 5e-4, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.1 });
  const schedule = cosineWithWarmup({ baseLr: 5e-4, warmup: 10, total: 60 });
  const B = 16;
  const losses: number[] = [];
  for (let step = 0; step < 60; step++) {
    optimizer.setLr(schedule(step));
    const batch = data.batch(step * B, B, 16);
    const images = T.Tensor.from(batch.pixels, [B, 3, 16, 16]);
    const tokens = T.Tensor.from(tokenizer.tokenize(batch.captions, { contextLength: 12 }), [B, 12], 'i32');
    const loss = trainStep(model, optimizer, images, tokens);
    losses.push(await loss.item());
    for (const t of [images, tokens, loss]) t.dispose();
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const [first, last] = [mean(losses.slice(0, 5)), mean(losses.slice(-10))];
  console.log(`training in the page: loss ${first.toFixed(3)} → ${last.toFixed(3)} over 60 steps of 16 new scenes each`);
  assert.ok(losses.every(Number.isFinite), losses.join(', '));
  // ln 16 = 2.77 is the loss of features that say nothing; it must get well below where it started.
  assert.ok(last < 0.85 * first && last < Math.log(B), `losses ${losses.map((l) => l.toFixed(3)).join(', ')}`);
  model.dispose();
  optimizer.dispose();
});

test.run();
