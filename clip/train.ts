// Training CLIP from scratch, as a flat and explicit loop (nanoGPT's train.py is the model): everything it
// uses is defined elsewhere — data sources in clip/data/, the step in clip/step.ts, evaluation in
// clip/evaluate.ts, plots in clip/plot.ts, the run folder's rules in clip/io/run.ts. AdamW with the paper's
// β2 = 0.98 and ε = 1e-6, weight decay on weight matrices only, cosine schedule with warmup; periodic zero-shot
// and retrieval evaluation, JSONL metrics, SVG curves, atomic checkpoints, exact resume; fp32 or mixed
// precision (`amp`: f32 master weights, f16 compute, dynamic loss scaling — nn/precision.ts).
//
// What a user has is never lost: every input (options, data, init weights, the checkpoint to resume) is checked
// before anything in the run folder is written or deleted; the folder of another run is refused; a checkpoint
// is only written from finite weights, and before any evaluation that could fail; a stop request (a signal in
// the CLI) ends the step, saves and says where. A checkpoint records the settings that shape the run, so a
// resumed run continues exactly, or says what was changed.
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import * as T from '../ops/index.ts';
import { allFinite, checkpointInfo, restoreCheckpoint } from '../nn/checkpoint.ts';
import { saveCheckpoint } from '../nn/io/checkpoint.ts';
import { readSafetensors } from '../nn/io/safetensors.ts';
import { AdamW, cosineWithWarmup, decayGroups } from '../nn/optim.ts';
import { GradScaler } from '../nn/precision.ts';
import { CONFIGS, type ClipConfig } from './config.ts';
import { DEFAULT_DATA_LIMITS, type DataLimits } from './data/files.ts';
import { trainingData } from './data/index.ts';
import { evaluateClip, type EvalResult } from './evaluate.ts';
import { appendMetrics, openRunFolder, resumeMetrics, startMetrics } from './io/run.ts';
import { CLIP } from './model.ts';
import { evalChart, lossChart } from './plot.ts';
import { CapturedAmpStep, precompileStep, trainStep, trainStepAmp } from './step.ts';
import { readTokenizer, saveBpe } from './io/vocab.ts';
import { OPENAI_VOCAB_SIZE, Tokenizer, trainBpe } from './tokenizer.ts';
import { isExportFolder, loadExport } from './io/interop.ts';
import { loadClip, saveClip, tokenizerFor } from './io/weights.ts';

/** Everything a training run takes (`clipgpu train`'s flags); `out` is the run folder. */
export interface TrainOptions {
  /** The model; a new run without one trains ViT-scenes, a resumed one continues its checkpoint's. */
  config?: ClipConfig;
  batchSize: number;
  steps: number;
  lr: number;
  weightDecay: number;
  warmup: number;
  seed: number;
  out: string;
  /** Evaluate every this many steps and at the end (0: never). */
  evalEvery: number;
  /** Save a checkpoint every this many steps (0: only at the end and when stopped). */
  saveEvery: number;
  /** Continue the run in `out` from its checkpoint (which must exist). */
  resume: boolean;
  /** Replace a run already in `out` (its files are deleted first). */
  overwrite?: boolean;
  /**
   * Fine-tune from these weights: a weights file (OpenAI, open_clip or Hugging Face layout, with vocab.txt.gz
   * beside it when it has its own vocabulary) or an open_clip / Hugging Face export folder. Its model and
   * tokenizer are used; no vocabulary is learned.
   */
  initFrom?: string;
  /** Global gradient-norm clip (0: off). */
  clipGrad: number;
  /** Micro-batches per step (open_clip's --accum-freq): the contrastive batch is batchSize, memory that of one micro-batch. */
  accumFreq: number;
  /**
   * 'fp32' (the default), or 'amp' (open_clip's meaning): f32 master weights and optimizer state, the matmul-class
   * layers in f16, norms, softmax statistics, the loss and the logit scale in f32, dynamic loss scaling (a step
   * whose gradients overflow is skipped and the scale halved; both logged in metrics.jsonl).
   */
  precision?: 'fp32' | 'amp';
  /**
   * Replay the recorded step (core/capture.ts) instead of recording every dispatch again: the same commands,
   * a fraction of the JavaScript; on by default (fp32; amp reads a flag back each step and stays eager).
   */
  replay?: boolean;
  /** BPE vocabulary size trained on the captions (the shipped CLIP vocabulary when 0). */
  vocabSize: number;
  /** A CSV/TSV of filepath,caption, a folder of images with .txt captions, or webdataset shards (overrides `dataset`). */
  trainData?: string;
  /** A built-in dataset (clip/data/index.ts); 'scenes' by default. */
  dataset?: string;
  /** What may be read of `trainData` (image size and pixel limits, paths outside its folder). */
  dataLimits?: DataLimits;
  /**
   * Options that hold defaults rather than the user's choice: a resumed run takes these from its checkpoint's
   * settings (a value the user gave that differs from the checkpoint's is used, and said).
   */
  defaulted?: readonly (keyof RunSettings)[];
  /** Asked after every step; true ends the run after saving a checkpoint (TrainingInterrupted). */
  stopRequested?: () => boolean;
  /** Hears each progress and evaluation line (the command prints them). */
  log: (line: string) => void;
}

/** What a checkpoint records of its run's options: everything that shapes the training trajectory, and when it evaluates and saves. */
export type RunSettings = Pick<
  TrainOptions,
  | 'batchSize'
  | 'steps'
  | 'lr'
  | 'weightDecay'
  | 'warmup'
  | 'seed'
  | 'clipGrad'
  | 'accumFreq'
  | 'precision'
  | 'dataset'
  | 'trainData'
  | 'evalEvery'
  | 'saveEvery'
>;

/** The CLI flag of each recorded setting (how changes are named). */
const SETTING_FLAGS: { [K in keyof RunSettings]-?: string } = {
  batchSize: 'batch-size',
  steps: 'steps',
  lr: 'lr',
  weightDecay: 'wd',
  warmup: 'warmup',
  seed: 'seed',
  clipGrad: 'clip-grad',
  accumFreq: 'accum-freq',
  precision: 'precision',
  dataset: 'dataset',
  trainData: 'train-data',
  evalEvery: 'eval-every',
  saveEvery: 'save-every',
};

/** The run stopped on request after saving; the message says where and how to continue. */
export class TrainingInterrupted extends Error {
  override name = 'TrainingInterrupted';
}

/** Why a run stopped without finishing: the message says what happened and what was kept. */
export class TrainingFailed extends Error {
  override name = 'TrainingFailed';
}

/** Trains CLIP into the run folder `options.out` (checkpoints, final weights, vocabulary, metrics, plots); the final evaluation, or null. */
export async function train(options: TrainOptions): Promise<EvalResult | null> {
  checkOptions(options);
  checkDevice(options);
  const run = openRunFolder(options.out, { resume: options.resume, overwrite: options.overwrite ?? false, log: options.log });
  let init: { model: CLIP; tokenizer: Tokenizer } | null = null;
  /** A new run's files are written and no step has finished yet. */
  let unstarted = false;
  try {
    // Everything is read and checked before anything in the folder is written or deleted (--overwrite included).
    // A resumed run continues its checkpoint's model; asking for another one is an error, not a silent switch.
    const resumed = options.resume ? readSafetensors(run.checkpoint) : null;
    const info = resumed ? checkpointInfo(resumed, run.checkpoint) : null;
    const savedConfig = (info?.extra as { config?: ClipConfig } | undefined)?.config;
    if (resumed && !savedConfig) throw new TrainingFailed(`${run.checkpoint}: the checkpoint does not record its model config`);
    if (savedConfig && options.config) {
      const differs = configDifferences(options.config, savedConfig);
      if (differs.length) {
        const show = (v: unknown) => (v === undefined ? 'unset' : JSON.stringify(v));
        const asked = differs.map((k) => `${k} ${show(savedConfig[k])}, asked ${show(options.config![k])}`).join('; ');
        throw new TrainingFailed(
          `--model: ${run.checkpoint} was trained with another model (${asked}); resume without --model to continue it`,
        );
      }
    }
    const o = info ? resumedSettings(options, info.extra.settings as RunSettings | undefined, run.checkpoint) : options;
    const data = trainingData({ dataset: o.dataset, trainData: o.trainData, seed: o.seed, log: o.log, limits: o.dataLimits ?? DEFAULT_DATA_LIMITS });

    // Fine-tuning starts from another model and its tokenizer.
    init = o.initFrom ? loadInitial(o.initFrom) : null;
    if (init && o.config) {
      const differs = configDifferences(o.config, init.model.config);
      if (differs.length) {
        throw new TrainingFailed(
          `--model and --init-from ${o.initFrom} disagree (${differs.join(', ')}): leave out --model to fine-tune that model`,
        );
      }
    }

    // A small vocabulary learned from the captions keeps the embedding table (and its update) small.
    let tokenizer: Tokenizer;
    if (init) tokenizer = init.tokenizer;
    else if (savedConfig) {
      if (existsSync(run.vocab)) tokenizer = readTokenizer(run.vocab, savedConfig.vocabSize);
      else if (savedConfig.vocabSize === OPENAI_VOCAB_SIZE) tokenizer = readTokenizer();
      else {
        throw new TrainingFailed(
          `--resume: ${run.vocab} is missing, and the checkpoint's ${savedConfig.vocabSize}-token vocabulary was trained with the run`,
        );
      }
    } else if (o.vocabSize > 0) tokenizer = new Tokenizer(trainBpe(data.corpus(4000), o.vocabSize));
    else tokenizer = readTokenizer();
    const config: ClipConfig = init?.model.config ?? savedConfig ?? { ...(o.config ?? CONFIGS['ViT-scenes']), vocabSize: tokenizer.vocabSize };
    const n = config.imageResolution;
    const L = config.contextLength;
    checkBatchFits(o.batchSize, config);

    // A stop asked for before this point (while the device opened or kernels were tuned) has nothing to save.
    if (o.stopRequested?.()) {
      throw new TrainingInterrupted(
        `stopped before the first step: nothing was written${resumed ? `; ${run.checkpoint} is as it was` : ''}`,
      );
    }
    // Checked: now the previous run may go (--overwrite), and this one's files are written.
    run.replacePrevious();
    unstarted = !resumed;
    if (!resumed && tokenizer.vocabSize !== OPENAI_VOCAB_SIZE) saveBpe(run.vocab, tokenizer.merges);
    o.log(`model ${configName(config)}, batch ${o.batchSize}, ${o.steps} steps, lr ${o.lr}, precision ${o.precision ?? 'fp32'}, out ${o.out}`);

    T.manualSeed(o.seed);
    const model = init?.model ?? new CLIP(config);
    init = null; // the model owns it now
    model.train();
    if (o.initFrom) {
      const architecture = Array.isArray(config.visionLayers) ? 'ResNet' : 'ViT';
      o.log(`fine-tuning from ${o.initFrom} (${architecture} ${config.visionWidth} wide, ${config.vocabSize} tokens)`);
    }
    const { decay, noDecay } = decayGroups(model.namedParameters());
    const optimizer = new AdamW([{ params: decay }, { params: noDecay, options: { weightDecay: 0 } }], {
      lr: o.lr,
      beta1: 0.9,
      beta2: 0.98,
      eps: 1e-6,
      weightDecay: o.weightDecay,
    });
    const schedule = cosineWithWarmup({ baseLr: o.lr, warmup: o.warmup, total: o.steps });
    const scaler = o.precision === 'amp' ? new GradScaler() : null;
    let skipped = 0;
    const history: { step: number; loss: number }[] = [];
    const evals: { step: number; metrics: Record<string, number> }[] = [];
    let start = 0;
    if (resumed) {
      const restored = restoreCheckpoint(resumed, run.checkpoint, model, optimizer);
      start = restored.step;
      // The loss scale continues where it was (a run resumed in another precision starts its own schedule).
      const lossScale = (restored.extra as { lossScale?: { scale: number; goodSteps: number } } | undefined)?.lossScale;
      if (scaler && lossScale) scaler.load(lossScale);
      for (const r of resumeMetrics(run.metrics, start, o.log)) {
        if (typeof r.loss === 'number') history.push({ step: r.step - 1, loss: r.loss });
        if (r.eval) evals.push({ step: r.step, metrics: chartMetrics(r.eval as EvalResult) });
      }
      o.log(`resumed from ${run.checkpoint} at step ${start}`);
    } else startMetrics(run.metrics);

    let savedStep: number | null = resumed ? start : null;
    const kept = () => (savedStep === null ? 'no checkpoint had been saved yet' : `the last good checkpoint (${run.checkpoint}, step ${savedStep}) is kept`);
    /** Saves a checkpoint of the state after `step` steps, refusing weights or optimizer state that are not finite. */
    const save = async (step: number) => {
      if (!(await allFinite([...model.parameters(), ...optimizer.stateDict().tensors.values()]))) {
        throw new TrainingFailed(`the weights are not finite after step ${step} (diverged; try a lower --lr or --clip-grad): stopping; ${kept()}`);
      }
      await saveCheckpoint(run.checkpoint, model, optimizer, {
        step,
        rng: T.defaultGenerator.state(),
        extra: { config, settings: recordedSettings(o), ...(scaler ? { lossScale: scaler.state() } : {}) },
      });
      savedStep = step;
    };
    const writePlots = () => {
      writeFileSync(run.lossPlot, lossChart(history));
      writeFileSync(run.evalPlot, evalChart(evals));
    };

    let last: EvalResult | null = null;
    const began = performance.now();
    const batchAt = (step: number) => {
      const b = data.batch(step * o.batchSize, o.batchSize, n);
      return { pixels: b.pixels, tokens: tokenizer.tokenize(b.captions, { contextLength: L }) };
    };
    let next = start < o.steps ? batchAt(start) : null;
    const stepOptions = { microBatches: o.accumFreq, clipGrad: o.clipGrad };
    // The step recorded once and replayed (equal bit for bit to the eager step, tested); a last batch of
    // another size, or replaced state, makes it record again. Under amp, in two halves around the readback of
    // the finiteness flag (CapturedAmpStep).
    const replay = o.replay !== false;
    const captured = replay && !scaler ? new T.CapturedStep((x: T.Tensor, t: T.Tensor) => trainStep(model, optimizer, x, t, stepOptions), 'train step') : null;
    const capturedAmp = replay && scaler ? new CapturedAmpStep(model, optimizer, scaler, stepOptions) : null;
    let refusalNoted = false;
    if (next && precompileWanted()) {
      // The first step's pipelines, compiled in parallel before it (else each compiles when first used).
      const compiledFrom = performance.now();
      const [images, tokens] = [T.Tensor.from(next.pixels, [o.batchSize, 3, n, n]), T.Tensor.from(next.tokens, [o.batchSize, L], 'i32')];
      const compiled = await precompileStep(model, images, tokens, { microBatches: o.accumFreq, amp: !!scaler });
      images.dispose();
      tokens.dispose();
      if (compiled) o.log(`compiled ${compiled} pipelines ahead of the first step in ${((performance.now() - compiledFrom) / 1000).toFixed(1)} s`);
    }
    for (let step = start; step < o.steps; step++) {
      const images = T.Tensor.from(next!.pixels, [o.batchSize, 3, n, n]);
      const tokens = T.Tensor.from(next!.tokens, [o.batchSize, L], 'i32');
      const lr = schedule(step);
      optimizer.setLr(lr);
      const lossScale = scaler?.scale;
      const amp = !scaler
        ? null
        : capturedAmp
          ? await capturedAmp.run(images, tokens)
          : await trainStepAmp(model, optimizer, scaler, images, tokens, stepOptions);
      const loss = amp ? amp.loss : captured ? captured.run(images, tokens) : trainStep(model, optimizer, images, tokens, stepOptions);
      const refusal = captured?.refusal ?? capturedAmp?.refusal;
      if (refusal && !refusalNoted) {
        refusalNoted = true;
        o.log(`note: ${refusal}`);
      }
      if (amp?.skipped) skipped++;
      images.dispose();
      tokens.dispose();
      // Draw the next batch on the CPU while the GPU runs this step; the loss readback waits for both.
      if (step + 1 < o.steps) next = batchAt(step + 1);
      const value = await loss.item();
      loss.dispose();
      if (!Number.isFinite(value)) {
        const hint = scaler ? ' (the f16 forward overflowed: try --precision fp32 or a lower --lr)' : '';
        throw new TrainingFailed(`loss is ${value} at step ${step}${hint}: stopping; ${kept()}`);
      }
      history.push({ step, loss: value });
      unstarted = false;

      // Metrics every step (the logit scale only when a progress line is printed: it costs a readback).
      const done = step + 1;
      const logged = done % 10 === 0 || done === o.steps;
      const scale = logged ? Math.exp(await model.logitScale.item()) : null;
      const seconds = (performance.now() - began) / 1000;
      const imagesPerSecond = ((done - start) * o.batchSize) / seconds;
      // Under amp: the loss scale this step ran with, and whether its update was skipped (overflowed gradients).
      const ampFields = amp ? { loss_scale: lossScale, ...(amp.skipped ? { skipped: true } : {}) } : {};
      appendMetrics(run.metrics, {
        step: done,
        loss: value,
        lr,
        ...(scale === null ? {} : { logit_scale: scale }),
        ...ampFields,
        images_per_s: imagesPerSecond,
        gpu_live_bytes: T.memory().liveBytes,
      });
      if (logged) {
        const eta = ((o.steps - done) * seconds) / (done - start);
        const ampLine: Record<string, string> = scaler ? { 'loss scale': String(scaler.scale), skipped: String(skipped) } : {};
        o.log(
          progressLine({
            step: `${done}/${o.steps}`,
            loss: value.toFixed(4),
            lr: lr.toExponential(2),
            scale: scale!.toFixed(1),
            ...ampLine,
            'img/s': imagesPerSecond.toFixed(0),
            eta: `${Math.round(eta)}s`,
          }),
        );
      }

      // Save before evaluating: an evaluation that fails never costs the trained weights.
      if ((o.saveEvery > 0 && done % o.saveEvery === 0) || done === o.steps) await save(done);
      if (done === o.steps) {
        if (data.zeroShot) model.prompts = { templates: data.zeroShot.templates, classes: data.zeroShot.classes };
        await saveClip(run.model, model);
      }
      // A stop asked for during the step or during the evaluation after it: save this step and end.
      const stopIfAsked = async () => {
        if (!o.stopRequested?.()) return;
        if (savedStep !== done) await save(done);
        writePlots();
        throw new TrainingInterrupted(`stopped at step ${done} of ${o.steps}: saved ${run.checkpoint}; continue with --resume --out ${o.out}`);
      };
      await stopIfAsked();
      if (o.evalEvery > 0 && (done % o.evalEvery === 0 || done === o.steps)) {
        last = await evaluateClip(model, tokenizer, data);
        evals.push({ step: done, metrics: chartMetrics(last) });
        appendMetrics(run.metrics, { step: done, eval: last });
        const zeroShot = Object.fromEntries(Object.entries(last.zeroShot).map(([k, v]) => [`zero-shot ${k}`, `${(100 * v).toFixed(1)}%`]));
        const retrieval: Record<string, string> = last.retrieval
          ? { 'R@1 i→t': last.retrieval.imageToTextR1.toFixed(2), 't→i': last.retrieval.textToImageR1.toFixed(2) }
          : { retrieval: 'skipped (no usable validation pair)' };
        o.log(progressLine({ eval: `step ${done}`, ...zeroShot, ...retrieval }));
        writePlots();
        await stopIfAsked();
      }
    }
    if (start >= o.steps) o.log(`${run.checkpoint} is already at step ${start} of ${o.steps}: nothing to train`);
    writePlots();
    captured?.dispose();
    capturedAmp?.dispose();
    // A run resumed at its end still reports its evaluation (unless evaluation is off).
    const result = last ?? (o.evalEvery > 0 ? await evaluateClip(model, tokenizer, data) : null);
    model.dispose();
    optimizer.dispose();
    return result;
  } catch (e) {
    // A new run that failed before its first step (data that cannot be decoded, a batch the device cannot run)
    // has nothing worth keeping: its files go, so that the corrected command runs rather than being refused.
    if (unstarted) {
      for (const f of [run.vocab, run.metrics, run.lossPlot, run.evalPlot]) rmSync(f, { force: true });
      // A step the device cannot hold is sized by one flag (a new run's, so the user's own value).
      if (e instanceof Error && /buffer|binding limit|out of memory/i.test(e.message)) {
        e.message +=
          ` (the first step at --batch-size ${options.batchSize} does not fit this device: ` +
          'try a smaller --batch-size, or --accum-freq to split it)';
      }
    }
    throw e;
  } finally {
    init?.model.dispose();
    run.release();
  }
}

/** The config fields (all but the vocabulary size, which the tokenizer sets) on which `asked` and `actual` differ. */
function configDifferences(asked: ClipConfig, actual: ClipConfig): (keyof ClipConfig)[] {
  const keys = new Set([...Object.keys(asked), ...Object.keys(actual)] as (keyof ClipConfig)[]);
  return [...keys].filter((k) => k !== 'vocabSize' && JSON.stringify(asked[k] ?? null) !== JSON.stringify(actual[k] ?? null));
}

/** A config's name in CONFIGS (the vocabulary size aside), else what it is. */
function configName(config: ClipConfig): string {
  const named = Object.entries(CONFIGS).find(([, c]) => configDifferences(c, config).length === 0);
  return named ? named[0] : `(${Array.isArray(config.visionLayers) ? 'ResNet' : 'ViT'} ${config.visionWidth} wide, ${config.embedDim}-d embeddings)`;
}

function recordedSettings(o: TrainOptions): RunSettings {
  return Object.fromEntries((Object.keys(SETTING_FLAGS) as (keyof RunSettings)[]).map((k) => [k, o[k] ?? null])) as RunSettings;
}

/**
 * The options of a resumed run: the checkpoint's settings where the user left the default, the user's where
 * they were given; each of those that differs from the checkpoint's is said, by flag.
 */
function resumedSettings(o: TrainOptions, saved: RunSettings | undefined, checkpoint: string): TrainOptions {
  if (!saved) {
    o.log(`--resume: ${checkpoint} does not record its run's settings (batch size, steps, lr, …): continuing with the ones given`);
    return o;
  }
  const merged: TrainOptions = { ...o };
  const changed: string[] = [];
  for (const key of Object.keys(SETTING_FLAGS) as (keyof RunSettings)[]) {
    const was = saved[key] ?? undefined;
    if (o.defaulted?.includes(key)) (merged as unknown as Record<string, unknown>)[key] = was;
    else if ((o[key] ?? undefined) !== was) changed.push(`--${SETTING_FLAGS[key]} ${was ?? '(none)'} → ${o[key] ?? '(none)'}`);
  }
  if (changed.length) {
    const scheduleNote = changed.some((c) => /^--(steps|lr|warmup) /.test(c)) ? ' (the learning-rate schedule changes with them)' : '';
    o.log(`--resume: continuing with settings that differ from the checkpoint's: ${changed.join(', ')}${scheduleNote}`);
  }
  checkOptions(merged);
  return merged;
}

/** A batch whose tensors cannot exist on this device is refused by flag before the run starts. */
function checkBatchFits(batchSize: number, config: ClipConfig): void {
  const n = config.imageResolution;
  const bytes = batchSize * 3 * n * n * 4;
  const limit = T.gpu().device.limits.maxStorageBufferBindingSize;
  if (bytes > limit) {
    throw new RangeError(
      `--batch-size ${batchSize}: a batch of ${n}×${n} images is ${(bytes / 2 ** 20).toFixed(0)} MiB, ` +
        `over this device's largest buffer (${(limit / 2 ** 20).toFixed(0)} MiB)`,
    );
  }
}

/** The model and tokenizer to fine-tune from: an export folder, or a weights file and its vocabulary. */
function loadInitial(path: string): { model: CLIP; tokenizer: Tokenizer } {
  if (isExportFolder(path)) return loadExport(path);
  const model = loadClip(path);
  try {
    return { model, tokenizer: tokenizerFor(path, model.config.vocabSize) };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** Every option in range, before anything is read or written (the messages name the CLI flags). */
export function checkOptions(o: TrainOptions): void {
  const integer = (flag: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) throw new RangeError(`--${flag} must be an integer ≥ ${min}, got ${v}`);
  };
  const number = (flag: string, v: number, ok: (v: number) => boolean, range: string) => {
    if (!Number.isFinite(v) || !ok(v)) throw new RangeError(`--${flag} must be ${range}, got ${v}`);
  };
  integer('batch-size', o.batchSize, 2); // a contrastive batch needs negatives
  integer('steps', o.steps, 1);
  number('lr', o.lr, (v) => v > 0, 'a positive number');
  number('wd', o.weightDecay, (v) => v >= 0, 'a number ≥ 0');
  integer('warmup', o.warmup, 0);
  integer('seed', o.seed, 0);
  integer('eval-every', o.evalEvery, 0); // 0: off, as for every periodic flag
  integer('save-every', o.saveEvery, 0);
  number('clip-grad', o.clipGrad, (v) => v >= 0, 'a number ≥ 0 (0: off)');
  integer('accum-freq', o.accumFreq, 1);
  if (o.dataLimits) {
    integer('max-image-bytes', o.dataLimits.maxBytes, 1);
    integer('max-image-pixels', o.dataLimits.maxPixels, 1);
  }
  if (o.batchSize % o.accumFreq !== 0) throw new RangeError(`--accum-freq ${o.accumFreq} must divide --batch-size ${o.batchSize}`);
  if (o.vocabSize !== 0) integer('vocab-size', o.vocabSize, 514); // 512 byte symbols and the two special tokens
  if (o.resume && o.overwrite) throw new RangeError('--resume and --overwrite contradict each other: choose one');
  if (o.resume && o.initFrom) throw new RangeError('--resume continues the run\'s checkpoint; --init-from starts a new run from other weights: choose one');
  if (o.initFrom && !existsSync(o.initFrom)) throw new RangeError(`--init-from ${o.initFrom}: no such file or folder`);
  if (o.precision !== undefined && o.precision !== 'fp32' && o.precision !== 'amp') {
    throw new RangeError(`--precision must be fp32 or amp, got '${o.precision}'`);
  }
}

/** What the options need of the opened device: amp needs shader-f16 (the f32 path runs everywhere). */
export function checkDevice(o: TrainOptions): void {
  if (o.precision === 'amp' && !T.gpu().hasFeature('shader-f16')) {
    throw new RangeError(`--precision amp needs the WebGPU feature 'shader-f16', which this device (${T.gpu().name}) lacks: train with --precision fp32`);
  }
}

/** The evaluation numbers drawn in accuracy.svg. */
function chartMetrics(r: EvalResult): Record<string, number> {
  const zeroShot = Object.fromEntries(Object.entries(r.zeroShot).map(([name, top1]) => [`zero-shot: ${name}`, top1]));
  return r.retrieval ? { ...zeroShot, 'R@1 image→text': r.retrieval.imageToTextR1, 'R@1 text→image': r.retrieval.textToImageR1 } : zeroShot;
}

function progressLine(fields: Record<string, string>): string {
  return Object.entries(fields).map(([k, v]) => `${k} ${v}`).join('  ');
}

/**
 * Whether to compile the first step's pipelines in parallel ahead of it: CLIPGPU_PRECOMPILE=on|off, else where
 * there are cores to compile on besides the ones running the step (more than two; on lavapipe with two cores it
 * measured no faster, bench/RESULTS.md).
 */
function precompileWanted(): boolean {
  const setting = process.env.CLIPGPU_PRECOMPILE;
  return setting === 'on' || (setting !== 'off' && availableParallelism() > 2);
}
