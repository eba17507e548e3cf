// Kernel micro-benchmarking on your own workload: profile one CLIP training step kernel by kernel with GPU
// timestamps, and time one matmul shape against its FLOP count.
//
//   node scripts/run.mjs examples/profile_step.ts [--model ViT-scenes] [--batch 64] [--rows 20] [--precision fp32|amp]
import { parseArgs } from 'node:util';
import * as T from '../ops/index.ts';
import { CONFIGS } from '../clip/config.ts';
import { CLIP } from '../clip/model.ts';
import { trainStep, trainStepAmp } from '../clip/step.ts';
import { AdamW } from '../nn/optim.ts';
import { GradScaler } from '../nn/precision.ts';
import { useTuning } from '../kernels/io/tuning.ts';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'ViT-scenes' },
    batch: { type: 'string', default: '64' },
    rows: { type: 'string', default: '20' },
    precision: { type: 'string', default: 'fp32' },
  },
});
if (values.precision !== 'fp32' && values.precision !== 'amp') throw new RangeError(`--precision must be fp32 or amp, got '${values.precision}'`);
await T.init();
console.log(`adapter: ${T.gpu().name}`);
// The kernels a training run would use: this adapter's tuned choices (npm run tune), as the trainer applies them.
await useTuning(console.log);
const config = { ...CONFIGS[values.model!], vocabSize: 1000 };
const B = Number(values.batch);
const model = new CLIP(config);
const optimizer = new AdamW(model.parameters());
const images = T.keep(T.randNormal([B, 3, config.imageResolution, config.imageResolution]));
const ids = Int32Array.from({ length: B * config.contextLength }, (_, i) =>
  i % config.contextLength === 5 ? 999 : i % config.contextLength > 5 ? 0 : 1 + (i % 97),
);
const tokens = T.keep(T.Tensor.from(ids, [B, config.contextLength], 'i32'));

const scaler = new GradScaler();
const step = async () =>
  values.precision === 'amp'
    ? (await trainStepAmp(model, optimizer, scaler, images, tokens)).loss
    : trainStep(model, optimizer, images, tokens);
for (let i = 0; i < 3; i++) await (await step()).item(); // warm up: compile every pipeline once

const rows = await T.profile(async () => await (await step()).item(), { byGrid: true });
if (!rows) {
  console.log('this adapter has no timestamp-query; profiling needs it');
} else {
  const total = rows.reduce((s, r) => s + r.ms, 0);
  console.log(`\none training step: ${total.toFixed(1)} ms of GPU time in ${rows.reduce((s, r) => s + r.calls, 0)} dispatches\n`);
  console.log('     ms  share  calls  kernel [workgroups]');
  for (const r of rows.slice(0, Number(values.rows)))
    console.log(
      `${r.ms.toFixed(2).padStart(7)}  ${((100 * r.ms) / total).toFixed(1).padStart(4)}%  ${String(r.calls).padStart(5)}  ${r.name}`,
    );
}

const [M, K, N] = [1024, 1024, 1024];
const a = T.keep(T.randNormal([M, K]));
const b = T.keep(T.randNormal([K, N]));
T.matmul(a, b).dispose();
await T.sync();
const t0 = performance.now();
for (let i = 0; i < 3; i++) T.matmul(a, b).dispose();
await T.sync();
const ms = (performance.now() - t0) / 3;
console.log(`\nmatmul ${M}×${K}×${N}: ${ms.toFixed(1)} ms, ${((2 * M * N * K) / ms / 1e6).toFixed(2)} GFLOP/s`);
T.closeGpu();
