// `npm run train -- [flags]`: train a small CLIP from scratch on a built-in dataset (procedural scenes by
// default) or your own image–caption files, with open_clip-like flags. Leaves checkpoint.safetensors
// (resumable), model.safetensors (OpenAI layout, with its config and zero-shot prompts), vocab.txt.gz,
// metrics.jsonl, loss.svg and accuracy.svg in --out.
//
// Errors a user can cause are one line naming the flag, file or row (the stack trace with --debug or
// CLIPGPU_DEBUG=1). Ctrl-C, SIGTERM, SIGHUP or the parent process exiting finishes the current step, saves a
// checkpoint and exits 128 + the signal's number (130 for Ctrl-C); a second signal, a second or more after the
// first, exits at once (clip/cli/stop.ts).
import { parseArgs } from 'node:util';
import * as T from '../../ops/index.ts';
import { useTuning } from '../../kernels/io/tuning.ts';
import { CONFIGS } from '../config.ts';
import { DEFAULT_DATA_LIMITS } from '../data/files.ts';
import type { EvalResult } from '../evaluate.ts';
import { TrainingInterrupted, checkOptions, checkDevice, train, type RunSettings, type TrainOptions } from '../train.ts';
import { exitWithError } from './common.ts';
import { watchStopRequests } from './stop.ts';

// The settings a checkpoint records (RunSettings) have no parser default: left out, a resumed run takes the
// checkpoint's value and a new run the one in SETTING_DEFAULTS. Periodic flags: 0 turns them off.
const FLAGS = {
  model: { type: 'string' },
  'batch-size': { type: 'string' },
  steps: { type: 'string' },
  lr: { type: 'string' },
  wd: { type: 'string' },
  warmup: { type: 'string' },
  seed: { type: 'string' },
  out: { type: 'string' },
  'eval-every': { type: 'string' },
  'save-every': { type: 'string' },
  'clip-grad': { type: 'string' },
  'accum-freq': { type: 'string' },
  precision: { type: 'string' },
  'vocab-size': { type: 'string', default: '1000' },
  resume: { type: 'boolean', default: false },
  overwrite: { type: 'boolean', default: false },
  'init-from': { type: 'string' },
  'train-data': { type: 'string' },
  dataset: { type: 'string' },
  'max-image-bytes': { type: 'string', default: String(DEFAULT_DATA_LIMITS.maxBytes) },
  'max-image-pixels': { type: 'string', default: String(DEFAULT_DATA_LIMITS.maxPixels) },
  'allow-outside-paths': { type: 'boolean', default: false },
  'no-replay': { type: 'boolean', default: false },
  debug: { type: 'boolean', default: false },
} as const;

const SETTING_DEFAULTS = {
  'batch-size': '64',
  steps: '2800',
  lr: '2e-3',
  wd: '0.1',
  warmup: '100',
  seed: '0',
  'eval-every': '350',
  'save-every': '1400',
  'clip-grad': '0',
  'accum-freq': '1',
  precision: 'fp32',
  dataset: 'scenes',
} as const;
/** Each recorded setting's TrainOptions name. */
const SETTING_KEYS: Record<keyof typeof SETTING_DEFAULTS | 'train-data', keyof RunSettings> = {
  'batch-size': 'batchSize',
  steps: 'steps',
  lr: 'lr',
  wd: 'weightDecay',
  warmup: 'warmup',
  seed: 'seed',
  'eval-every': 'evalEvery',
  'save-every': 'saveEvery',
  'clip-grad': 'clipGrad',
  'accum-freq': 'accumFreq',
  precision: 'precision',
  dataset: 'dataset',
  'train-data': 'trainData',
};

/** The command line with every flag and its default, for --help. */
export const USAGE = `usage: clipgpu train [flags]   (with --resume, a setting left out is the checkpoint's)\n${Object.entries(FLAGS)
  .map(
    ([name, flag]) =>
      `  --${name}${
        flag.type === 'boolean'
          ? ''
          : 'default' in flag
            ? ` ${flag.default}`
            : name in SETTING_DEFAULTS
              ? ` ${SETTING_DEFAULTS[name as keyof typeof SETTING_DEFAULTS]}`
              : ' VALUE'
      }`,
  )
  .join('\n')}`;

function fail(e: unknown, code = 1): never {
  return exitWithError('train', e, code);
}

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

/** `clipgpu train [flags]`; `argv` holds the flags only. */
export async function main(argv: string[]): Promise<void> {
  let values: { [K in keyof typeof FLAGS]?: string | boolean };
  try {
    values = parseArgs({ args: argv, options: FLAGS, strict: true }).values;
  } catch (e) {
    fail(e, 2);
  }
  const config = values.model === undefined ? undefined : CONFIGS[values.model as string];
  if (values.model !== undefined && !config) fail(`unknown --model '${values.model}'; known: ${Object.keys(CONFIGS).join(', ')}`, 2);
  const setting = (name: keyof typeof SETTING_DEFAULTS): string => (values[name] as string | undefined) ?? SETTING_DEFAULTS[name];
  const number = (name: keyof typeof FLAGS): number => {
    const text = String(name in SETTING_DEFAULTS ? setting(name as keyof typeof SETTING_DEFAULTS) : values[name]);
    const v = Number(text);
    if (text.trim() === '' || !Number.isFinite(v)) fail(`--${name} must be a number, got '${text}'`, 2);
    return v;
  };

  // A signal or the parent's exit asks the loop to stop after its step (it saves); a second signal exits at once.
  const stop = watchStopRequests('train', log);

  // Each dataset trains into its own folder unless --out says otherwise.
  const out = (values.out as string | undefined) ?? (values['train-data'] ? 'runs/custom' : `runs/${setting('dataset')}`);
  const options: TrainOptions = {
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
    resume: values.resume as boolean,
    overwrite: values.overwrite as boolean,
    initFrom: values['init-from'] as string | undefined,
    clipGrad: number('clip-grad'),
    accumFreq: number('accum-freq'),
    precision: setting('precision') as TrainOptions['precision'],
    replay: !values['no-replay'],
    vocabSize: number('vocab-size'),
    trainData: values['train-data'] as string | undefined,
    dataset: setting('dataset'),
    dataLimits: { maxBytes: number('max-image-bytes'), maxPixels: number('max-image-pixels'), allowOutside: values['allow-outside-paths'] as boolean },
    // --dataset and --train-data name the data together: giving either one chooses it.
    defaulted: (Object.keys(SETTING_KEYS) as (keyof typeof SETTING_KEYS)[])
      .filter(
        (f) =>
          values[f] === undefined &&
          !((f === 'dataset' || f === 'train-data') && (values.dataset ?? values['train-data']) !== undefined),
      )
      .map((f) => SETTING_KEYS[f]),
    stopRequested: () => stop.reason() !== null,
    log,
  };

  try {
    checkOptions(options); // before the device opens or anything is tuned: a bad flag costs nothing
    await T.init();
    console.log(`adapter: ${T.gpu().name}`);
    checkDevice(options);
    await useTuning(log);
    const began = performance.now();
    const result = await train(options);
    log('');
    const minutes = (performance.now() - began) / 60000;
    console.log('\nsummary');
    console.log(`  ${'wall clock'.padEnd(42)}${minutes.toFixed(1)} min`);
    if (!result) console.log(`  ${'evaluation'.padEnd(42)}off (--eval-every 0)`);
    else printResult(result);
    T.closeGpu();
  } catch (e) {
    if (barShown) process.stdout.write('\n');
    fail(e, e instanceof TrainingInterrupted ? stop.exitCode() : 1);
  }
}

/** The summary's evaluation lines. */
function printResult(result: EvalResult): void {
  for (const [name, top1] of Object.entries(result.zeroShot)) console.log(`  ${`zero-shot top-1, ${name}`.padEnd(42)}${(100 * top1).toFixed(1)}%`);
  const r = result.retrieval;
  if (r) {
    console.log(
      `  ${'retrieval R@1 / R@5 image → text'.padEnd(42)}${r.imageToTextR1.toFixed(2)} / ${r.imageToTextR5.toFixed(2)}` +
        `  (${r.pairs} validation pairs)`,
    );
    console.log(`  ${'retrieval R@1 / R@5 text → image'.padEnd(42)}${r.textToImageR1.toFixed(2)} / ${r.textToImageR5.toFixed(2)}`);
  } else console.log(`  ${'retrieval'.padEnd(42)}skipped: no validation image could be decoded`);
}
