// `npm run bench:memory [-- --model ViT-B/32] [-- --batch 32]`: the GPU memory of one CLIP training step's
// forward + backward in fp32, in amp and in fp32 with gradient checkpointing (ops/checkpoint.ts: the memory /
// time trade), and of the weights in f32 and f16.
//
// Activation memory = the peak of live GPU bytes during lossAndGradients (T.memory().peakBytes, buffers as the
// pool rounds them) minus what was live before it (parameters, optimizer state, the batch) and minus the
// gradients it leaves. Under amp the f16 copies of the weights that the matmuls save for their backward count
// as activations (PyTorch's autocast caches the same casts). Validated: both losses are finite and agree to
// f16 precision.
import { parseArgs } from 'node:util';
import { CONFIGS } from '../clip/config.ts';
import { CLIP } from '../clip/model.ts';
import { lossAndGradients } from '../clip/step.ts';
import * as T from '../ops/index.ts';
import { AdamW } from '../nn/optim.ts';
import { autocast } from '../nn/precision.ts';

const { values } = parseArgs({ options: { model: { type: 'string', default: 'ViT-B/32' }, batch: { type: 'string', default: '32' } } });
const config = CONFIGS[values.model!];
if (!config) throw new RangeError(`--model: unknown '${values.model}'; known: ${Object.keys(CONFIGS).join(', ')}`);
const batch = Number(values.batch);
const MB = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

await T.init();
console.log(`adapter: ${T.gpu().name}`);
if (!T.gpu().hasFeature('shader-f16')) throw new Error(`this device (${T.gpu().name}) lacks shader-f16: nothing to compare`);

async function step(precision: 'fp32' | 'amp', checkpointing = false): Promise<{ activations: number; gradients: number; loss: number; seconds: number }> {
  T.manualSeed(0);
  const model = new CLIP(config);
  model.train();
  model.gradientCheckpointing = checkpointing;
  const optimizer = new AdamW(model.parameters(), { lr: 1e-4 });
  const n = config.imageResolution;
  const images = T.keep(T.randNormal([batch, 3, n, n]));
  const L = config.contextLength;
  const ids = Int32Array.from({ length: batch * L }, (_, i) =>
    i % L === L - 1 ? config.vocabSize - 1 : 1 + ((i * 7919) % (config.vocabSize - 2)),
  );
  const tokens = T.keep(T.Tensor.from(ids, [batch, L], 'i32'));
  // Optimizer state exists from the first update on: take one so it is counted as held, not as activations.
  optimizer.step();
  await T.sync();
  const before = T.memory().liveBytes;
  T.resetPeakMemory();
  const t0 = performance.now();
  const loss = precision === 'amp' ? autocast('f16', () => lossAndGradients(model, images, tokens, 1, 1024)) : lossAndGradients(model, images, tokens);
  const value = await loss.item();
  const seconds = (performance.now() - t0) / 1000;
  const { peakBytes } = T.memory();
  loss.dispose();
  const gradients = T.memory().liveBytes - before;
  const result = { activations: peakBytes - before - gradients, gradients, loss: value, seconds };
  for (const t of [images, tokens]) t.dispose();
  model.dispose();
  optimizer.dispose();
  await T.releasePooled();
  return result;
}

const fp32 = await step('fp32');
const amp = await step('amp');
const recomputed = await step('fp32', true);
if (recomputed.loss !== fp32.loss) throw new Error(`validation: loss with checkpointing ${recomputed.loss}, without ${fp32.loss} (expected equal)`);
if (!Number.isFinite(fp32.loss) || !Number.isFinite(amp.loss) || Math.abs(fp32.loss - amp.loss) > 1e-2 * Math.abs(fp32.loss)) {
  throw new Error(`validation: losses fp32 ${fp32.loss}, amp ${amp.loss} (expected finite and within 1%)`);
}
console.log(`${values.model}, batch ${batch}, one forward + backward (lossAndGradients)`);
console.log(`  activations  fp32 ${MB(fp32.activations)}   amp ${MB(amp.activations)}   amp/fp32 ${(amp.activations / fp32.activations).toFixed(3)}`);
console.log(`  gradients    fp32 ${MB(fp32.gradients)}   amp ${MB(amp.gradients)} (f32 master weights' gradients)`);
console.log(`  loss         fp32 ${fp32.loss.toFixed(5)}   amp ${amp.loss.toFixed(5)}`);
console.log(`  wall clock   fp32 ${fp32.seconds.toFixed(1)} s   amp ${amp.seconds.toFixed(1)} s`);
console.log(
  `gradient checkpointing (fp32): activations ${MB(fp32.activations)} → ${MB(recomputed.activations)} ` +
    `(${(recomputed.activations / fp32.activations).toFixed(3)}×), wall clock ${fp32.seconds.toFixed(1)} → ${recomputed.seconds.toFixed(1)} s`,
);

T.manualSeed(0);
const model = new CLIP(config);
const bytes = () => model.parameters().reduce((sum, p) => sum + p.size * (p.dtype === 'f16' ? 2 : 4), 0);
const full = bytes();
model.half();
console.log(`weights        f32 ${MB(full)}   f16 (CLIP.half()) ${MB(bytes())}   f16/f32 ${(bytes() / full).toFixed(3)}`);
model.dispose();
T.closeGpu();
