// `npm run train -- [flags]`: train a small CLIP from scratch on a built-in dataset (procedural scenes by
// default) or your own image–caption files, with open_clip-like flags. Leaves checkpoint.safetensors
// (resumable), model.safetensors (OpenAI layout, with its config and zero-shot prompts), vocab.txt.gz,
// metrics.jsonl, loss.svg and accuracy.svg in --out.
import { parseArgs } from 'node:util';
import * as T from '../../ops/index.ts';
import { CONFIGS } from '../config.ts';
import { train } from '../train.ts';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'ViT-scenes' },
    'batch-size': { type: 'string', default: '64' },
    steps: { type: 'string', default: '2800' },
    lr: { type: 'string', default: '2e-3' },
    wd: { type: 'string', default: '0.1' },
    warmup: { type: 'string', default: '100' },
    seed: { type: 'string', default: '0' },
    out: { type: 'string' },
    'eval-every': { type: 'string', default: '350' },
    'save-every': { type: 'string', default: '1400' },
    'clip-grad': { type: 'string', default: '0' },
    'accum-freq': { type: 'string', default: '1' },
    'vocab-size': { type: 'string', default: '1000' },
    resume: { type: 'boolean', default: false },
    'train-data': { type: 'string' },
    dataset: { type: 'string', default: 'scenes' },
  },
});
const config = CONFIGS[values.model!];
if (!config) {
  console.error(`train: unknown --model '${values.model}'; known: ${Object.keys(CONFIGS).join(', ')}`);
  process.exit(2);
}
const number = (name: keyof typeof values) => {
  const v = Number(values[name]);
  if (!Number.isFinite(v)) {
    console.error(`train: --${name} must be a number, got '${values[name]}'`);
    process.exit(2);
  }
  return v;
};

/** On a terminal, progress lines redraw one bar in place; elsewhere (logs, CI) every line is kept. */
let barShown = false;
function log(line: string): void {
  const progress = /^step (\d+)\/(\d+)/.exec(line);
  if (process.stdout.isTTY && progress) {
    const filled = Math.round((24 * Number(progress[1])) / Number(progress[2]));
    process.stdout.write(`\r\x1b[K[${'#'.repeat(filled)}${'.'.repeat(24 - filled)}] ${line}`);
    barShown = true;
    return;
  }
  if (barShown) process.stdout.write('\n');
  barShown = false;
  console.log(line);
}

// Each dataset trains into its own folder unless --out says otherwise.
const out = values.out ?? (values['train-data'] ? 'runs/custom' : `runs/${values.dataset}`);

await T.init();
console.log(`adapter: ${T.gpu().name}`);
console.log(`model ${values.model}, batch ${values['batch-size']}, ${values.steps} steps, lr ${values.lr}, out ${out}`);
const began = performance.now();
const result = await train({
  config,
  batchSize: number('batch-size'),
  steps: number('steps'),
  lr: number('lr'),
  weightDecay: number('wd'),
  warmup: number('warmup'),
  seed: number('seed'),
  out,
  evalEvery: number('eval-every'),
  saveEvery: number('save-every'),
  resume: values.resume!,
  clipGrad: number('clip-grad'),
  accumFreq: number('accum-freq'),
  vocabSize: number('vocab-size'),
  trainData: values['train-data'],
  dataset: values.dataset,
  log,
});
log('');
const minutes = (performance.now() - began) / 60000;
console.log('\nsummary');
console.log(`  ${'wall clock'.padEnd(42)}${minutes.toFixed(1)} min`);
for (const [name, top1] of Object.entries(result.zeroShot)) console.log(`  ${`zero-shot top-1, ${name}`.padEnd(42)}${(100 * top1).toFixed(1)}%`);
console.log(`  ${'retrieval R@1 / R@5 image → text'.padEnd(42)}${result.imageToTextR1.toFixed(2)} / ${result.imageToTextR5.toFixed(2)}  (validation pairs)`);
console.log(`  ${'retrieval R@1 / R@5 text → image'.padEnd(42)}${result.textToImageR1.toFixed(2)} / ${result.textToImageR5.toFixed(2)}`);
T.closeGpu();
