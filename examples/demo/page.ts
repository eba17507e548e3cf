// The demo page (`npm run demo`): the same engine and CLIP code as Node, in a tab. Train the scenes CLIP with
// live plots and download it in the formats Node's tools read; load a model trained anywhere (file picker or
// the run folder the server exposes) and classify uploaded images or drawn scenes zero-shot.
//
// `window.__demo` mirrors what the page shows (losses, evaluations, the last probabilities at full precision)
// for the end-to-end test (test/browser/demo.e2e.ts).
import * as T from '../../ops/index.ts';
import { AdamW, cosineWithWarmup, decayGroups } from '../../nn/optim.ts';
import { parseSafetensors } from '../../nn/safetensors.ts';
import { CONFIGS, type ClipConfig } from '../../clip/config.ts';
import { SHAPE_WORLD, compositionClasses, example, render, sceneSource } from '../../clip/data/scenes.ts';
import type { DataSource } from '../../clip/data/source.ts';
import { defaultTemplates, evaluateClip, textEncoderFor, zeroShotClassifier, zeroShotProbabilities } from '../../clip/evaluate.ts';
import { CLIP, l2normalize } from '../../clip/model.ts';
import { evalChart, lossChart } from '../../clip/plot.ts';
import { decodeImage, denormalize, preprocess, type RgbImage } from '../../clip/preprocess.ts';
import { trainStep } from '../../clip/step.ts';
import { DEFAULT_VOCAB, OPENAI_VOCAB_SIZE, Tokenizer, bpeBytes, trainBpe } from '../../clip/tokenizer.ts';
import { clipFromSafetensors, serializeClip } from '../../clip/weights.ts';

const $ = <E extends HTMLElement>(id: string) => document.getElementById(id) as E;
const input = (id: string) => $<HTMLInputElement>(id);

/** What the page shows, for people and for the end-to-end test. */
const demo = {
  adapter: '',
  losses: [] as number[],
  step: 0,
  imagesPerSecond: 0,
  evals: [] as { step: number; metrics: Record<string, number> }[],
  state: 'starting' as 'starting' | 'ready' | 'training' | 'paused' | 'trained' | 'failed',
  results: [] as { image: string; labels: string[]; probabilities: number[] }[],
  error: '',
  model: '',
};
(globalThis as { __demo?: typeof demo }).__demo = demo;

function showError(e: unknown): void {
  demo.error = e instanceof Error ? e.message : String(e);
  $('error').textContent = demo.error;
  console.error(demo.error);
}
const clearError = () => {
  demo.error = '';
  $('error').textContent = '';
};
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const status = (text: string) => ($('status').textContent = `${demo.adapter} · GPU memory ${mib(T.memory().liveBytes)} live · ${text}`);
/** Lets the page repaint between long pieces of work. */
const repaint = () => new Promise((r) => setTimeout(r, 0));
/** A number from an input, checked; the message names the field. */
function field(id: string, { integer = false, min = 0 } = {}): number {
  const v = Number(input(id).value);
  if (!Number.isFinite(v) || v < min || (integer && !Number.isInteger(v)))
    throw new Error(`${id}: must be ${integer ? 'an integer' : 'a number'} ≥ ${min}, got '${input(id).value}'`);
  return v;
}

// ---- training -------------------------------------------------------------------------------------------------

interface Run {
  config: ClipConfig;
  data: DataSource;
  merges: string[];
  tokenizer: Tokenizer;
  model: CLIP;
  optimizer: AdamW;
  schedule: (step: number) => number;
  batch: number;
  steps: number;
  evalEvery: number;
}
let run: Run | null = null;
let running = false;

async function createRun(): Promise<Run> {
  const config = CONFIGS[$<HTMLSelectElement>('model').value];
  const [batch, steps, lr, evalEvery] = [
    field('batch', { integer: true, min: 2 }),
    field('steps', { integer: true, min: 1 }),
    field('lr'),
    field('evalEvery', { integer: true, min: 0 }),
  ];
  if (!(lr > 0)) throw new Error(`lr: must be positive, got ${lr}`);
  const data = sceneSource(SHAPE_WORLD, 0);
  status('learning a 1000-token vocabulary from the captions…');
  await repaint();
  const merges = trainBpe(data.corpus(4000), 1000);
  const tokenizer = new Tokenizer(merges);
  T.manualSeed(0);
  const model = new CLIP({ ...config, vocabSize: tokenizer.vocabSize });
  model.train();
  const { decay, noDecay } = decayGroups(model.namedParameters());
  const optimizer = new AdamW(
    [{ params: decay }, { params: noDecay, options: { weightDecay: 0 } }],
    { lr, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.1 },
  );
  const schedule = cosineWithWarmup({ baseLr: lr, warmup: Math.min(100, Math.floor(steps / 10)), total: steps });
  for (const id of ['model', 'batch', 'steps', 'lr', 'evalEvery']) input(id).disabled = true;
  return { config, data, merges, tokenizer, model, optimizer, schedule, batch, steps, evalEvery };
}

async function train(): Promise<void> {
  clearError();
  run ??= await createRun();
  const r = run;
  const n = r.config.imageResolution;
  const L = r.config.contextLength;
  running = true;
  demo.state = 'training';
  $<HTMLButtonElement>('start').disabled = true;
  $<HTMLButtonElement>('pause').disabled = false;
  const began = performance.now();
  const first = demo.step;
  while (running && demo.step < r.steps) {
    const b = r.data.batch(demo.step * r.batch, r.batch, n);
    const images = T.Tensor.from(b.pixels, [r.batch, 3, n, n]);
    const tokens = T.Tensor.from(r.tokenizer.tokenize(b.captions, { contextLength: L }), [r.batch, L], 'i32');
    r.optimizer.setLr(r.schedule(demo.step));
    const loss = trainStep(r.model, r.optimizer, images, tokens);
    const value = await loss.item();
    for (const t of [images, tokens, loss]) t.dispose();
    if (!Number.isFinite(value))
      throw new Error(
        `loss is ${value} at step ${demo.step}: training stopped (try a lower lr); the model so far can still be downloaded`,
      );
    demo.losses.push(value);
    demo.step++;
    const perSecond = ((demo.step - first) * r.batch) / ((performance.now() - began) / 1000);
    demo.imagesPerSecond = perSecond;
    $('progress').textContent = `step ${demo.step}/${r.steps} · loss ${value.toFixed(4)} · ${perSecond.toFixed(1)} images/s`;
    status(running ? 'training' : 'paused');
    if (demo.step % 10 === 0 || demo.step === r.steps) $('lossPlot').innerHTML = lossChart(demo.losses.map((loss, step) => ({ step, loss })));
    // 0 turns evaluation off, as --eval-every 0 does in Node.
    if (r.evalEvery > 0 && (demo.step % r.evalEvery === 0 || demo.step === r.steps)) {
      const result = await evaluateClip(r.model, r.tokenizer, r.data);
      const metrics: Record<string, number> = Object.fromEntries(Object.entries(result.zeroShot).map(([k, v]) => [`zero-shot: ${k}`, v]));
      if (result.retrieval) metrics['R@1 image→text'] = result.retrieval.imageToTextR1;
      demo.evals.push({ step: demo.step, metrics });
      $('evalPlot').innerHTML = evalChart(demo.evals);
    }
  }
  running = false;
  r.model.prompts = { templates: r.data.zeroShot!.templates, classes: r.data.zeroShot!.classes };
  demo.state = demo.step >= r.steps ? 'trained' : 'paused';
  $<HTMLButtonElement>('start').disabled = demo.step >= r.steps;
  $<HTMLButtonElement>('start').textContent = 'Continue';
  $<HTMLButtonElement>('pause').disabled = true;
  $<HTMLButtonElement>('download').disabled = false;
  $<HTMLButtonElement>('useTrained').disabled = false;
  status(demo.state === 'trained' ? `trained ${demo.step} steps` : `paused at step ${demo.step}`);
}

function download(name: string, bytes: Uint8Array): void {
  const url = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'application/octet-stream' }));
  const a = Object.assign(document.createElement('a'), { href: url, download: name });
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

async function downloadRun(): Promise<void> {
  if (!run) return;
  run.model.prompts = { templates: run.data.zeroShot!.templates, classes: run.data.zeroShot!.classes };
  download('model.safetensors', await serializeClip(run.model));
  download('vocab.txt.gz', bpeBytes(run.merges));
}

// ---- zero-shot classification ---------------------------------------------------------------------------------

let loaded: { model: CLIP; tokenizer: Tokenizer; owned: boolean } | null = null;
let pictures: { name: string; image: RgbImage }[] = [];

/** A model from safetensors bytes and, for a model with its own vocabulary, the matching vocab.txt.gz bytes. */
async function loadModel(name: string, weights: Uint8Array, vocab: Uint8Array | null, vocabName: string): Promise<void> {
  const notes: string[] = [];
  const model = clipFromSafetensors(parseSafetensors(weights, name), name, { note: (l) => notes.push(l) });
  let tokenizer: Tokenizer;
  try {
    if (vocab) {
      tokenizer = Tokenizer.fromBytes(vocab, model.config.vocabSize, vocabName);
      if (tokenizer.vocabSize !== model.config.vocabSize)
        throw new Error(
          `${vocabName} has ${tokenizer.vocabSize} tokens but ${name} embeds ${model.config.vocabSize}: they are not from the same run`,
        );
    } else if (model.config.vocabSize === OPENAI_VOCAB_SIZE) {
      tokenizer = Tokenizer.fromBytes(await fetchBytes(DEFAULT_VOCAB.href), OPENAI_VOCAB_SIZE, "CLIP's vocabulary");
    } else throw new Error(`${name} was trained with its own ${model.config.vocabSize}-token vocabulary: choose its vocab.txt.gz too`);
  } catch (e) {
    model.dispose();
    throw e;
  }
  const architecture = Array.isArray(model.config.visionLayers) ? 'ResNet' : 'ViT';
  const noted = notes.length ? ` — ${notes.join('; ')}` : '';
  useModel(model, tokenizer, true, `${name} (${model.config.visionWidth}-wide ${architecture}, ${model.config.vocabSize} tokens)${noted}`);
}

function useModel(model: CLIP, tokenizer: Tokenizer, owned: boolean, label: string): void {
  if (loaded?.owned) loaded.model.dispose();
  loaded = { model, tokenizer, owned };
  demo.model = label;
  $('modelName').textContent = label;
  $<HTMLTextAreaElement>('labels').value = (model.prompts?.classes ?? compositionClasses(SHAPE_WORLD).names).join(', ');
  $<HTMLButtonElement>('classifyButton').disabled = false;
  status('model loaded');
}

async function fetchBytes(url: string): Promise<Uint8Array> {
  const response = await fetch(url);
  if (!response.ok) {
    const reason =
      response.status === 404 ? 'the server exposes no such file; start it with `npm run demo -- --run runs/scenes`' : response.statusText;
    throw new Error(`${url}: HTTP ${response.status} (${reason})`);
  }
  return new Uint8Array(await response.arrayBuffer());
}

const fileBytes = async (file: File) => new Uint8Array(await file.arrayBuffer());

async function loadChosenFiles(): Promise<void> {
  const weights = input('weightsFile').files?.[0];
  if (!weights) throw new Error('choose a model.safetensors first');
  const vocab = input('vocabFile').files?.[0] ?? null;
  await loadModel(weights.name, await fileBytes(weights), vocab ? await fileBytes(vocab) : null, vocab?.name ?? '');
}

async function loadServedRun(): Promise<void> {
  const weights = await fetchBytes('/run/model.safetensors');
  const vocab = await fetch('/run/vocab.txt.gz');
  await loadModel('run/model.safetensors', weights, vocab.ok ? new Uint8Array(await vocab.arrayBuffer()) : null, 'run/vocab.txt.gz');
}

async function chooseImages(): Promise<void> {
  const files = [...(input('images').files ?? [])];
  const problems: string[] = [];
  pictures = [];
  for (const file of files) {
    try {
      pictures.push({ name: file.name, image: decodeImage(await fileBytes(file), file.name) });
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  if (problems.length) showError(problems.join('\n'));
  showPictures();
}

function drawScenes(): void {
  const n = 128;
  pictures = [0, 1, 2, 3].map((i) => {
    const ex = example(SHAPE_WORLD, 7 + Math.floor(Math.random() * 1000), i, { pairs: 'heldOut', split: 'test', single: true });
    const chw = new Float32Array(3 * n * n);
    render(SHAPE_WORLD, ex, 'test', n, chw);
    return { name: `drawn: ${ex.objects[0].color} ${ex.objects[0].kind}`, image: denormalize(chw, n, n) };
  });
  showPictures();
}

function thumbnail(image: RgbImage): HTMLCanvasElement {
  const canvas = Object.assign(document.createElement('canvas'), { width: image.width, height: image.height });
  const pixels = new ImageData(image.width, image.height);
  for (let p = 0; p < image.width * image.height; p++) {
    for (let c = 0; c < 3; c++) pixels.data[4 * p + c] = Math.round(Math.min(255, Math.max(0, image.data[3 * p + c])));
    pixels.data[4 * p + 3] = 255;
  }
  canvas.getContext('2d')!.putImageData(pixels, 0, 0);
  return canvas;
}

function showPictures(rows?: { labels: string[]; probabilities: number[] }[]): void {
  const box = $('results');
  box.replaceChildren();
  pictures.forEach((p, i) => {
    const card = Object.assign(document.createElement('div'), { className: 'result' });
    card.append(thumbnail(p.image), Object.assign(document.createElement('div'), { textContent: p.name }));
    const row = rows?.[i];
    if (row) {
      const ranked = row.labels.map((label, j) => ({ label, p: row.probabilities[j] })).sort((a, b) => b.p - a.p).slice(0, 5);
      for (const { label, p: prob } of ranked) {
        const line = Object.assign(document.createElement('div'), { className: 'prob', textContent: `${(100 * prob).toFixed(2).padStart(6)}%  ${label}` });
        line.append(Object.assign(document.createElement('div'), { className: 'bar', style: `width: ${Math.max(1, 100 * prob)}%` }));
        card.append(line);
      }
    }
    box.append(card);
  });
}

async function classify(): Promise<void> {
  if (!loaded) throw new Error('load a model first');
  if (pictures.length === 0) throw new Error('choose images or draw scenes first');
  const labels = $<HTMLTextAreaElement>('labels').value.split(',').map((l) => l.trim()).filter(Boolean);
  if (labels.length < 2) throw new Error('labels: give at least two, separated by commas');
  const { model, tokenizer } = loaded;
  const wasTraining = model.training;
  model.eval();
  try {
    const n = model.config.imageResolution;
    const pixels = new Float32Array(pictures.length * 3 * n * n);
    pictures.forEach((p, i) => pixels.set(preprocess(p.image, n), i * 3 * n * n));
    const classifier = zeroShotClassifier(textEncoderFor(model, tokenizer), labels, defaultTemplates(model));
    const features = T.noGrad(() => T.tidy(() => l2normalize(model.encodeImage(T.Tensor.from(pixels, [pictures.length, 3, n, n])))));
    const probs = zeroShotProbabilities(features, classifier);
    const values = await probs.data();
    for (const t of [classifier, features, probs]) t.dispose();
    demo.results = pictures.map((p, i) => ({ image: p.name, labels, probabilities: Array.from(values.subarray(i * labels.length, (i + 1) * labels.length)) }));
    showPictures(demo.results);
    status(`classified ${pictures.length} images among ${labels.length} labels`);
  } finally {
    model.train(wasTraining);
  }
}

// ---- wiring ---------------------------------------------------------------------------------------------------

/** Runs a handler; any error becomes the page's visible message (nothing trained is lost). */
const guarded = (fn: () => unknown) => async () => {
  clearError();
  try {
    await fn();
  } catch (e) {
    running = false;
    if (demo.state === 'training') demo.state = 'paused';
    $<HTMLButtonElement>('pause').disabled = true;
    $<HTMLButtonElement>('start').disabled = false;
    if (run) $<HTMLButtonElement>('download').disabled = false;
    showError(e);
  }
};
const on = (id: string, event: string, fn: () => unknown) => $(id).addEventListener(event, guarded(fn));

try {
  await T.init();
  demo.adapter = T.gpu().name;
  const params = new URLSearchParams(location.search);
  for (const id of ['model', 'batch', 'steps', 'lr', 'evalEvery']) if (params.has(id)) input(id).value = params.get(id)!;
  on('start', 'click', train);
  on('pause', 'click', () => (running = false));
  on('download', 'click', downloadRun);
  on('loadFiles', 'click', loadChosenFiles);
  on('loadServed', 'click', loadServedRun);
  on('useTrained', 'click', () => run && useModel(run.model, run.tokenizer, false, `trained in this tab (${demo.step} steps)`));
  on('images', 'change', chooseImages);
  on('drawScenes', 'click', drawScenes);
  on('classifyButton', 'click', classify);
  demo.state = 'ready';
  status('ready');
} catch (e) {
  demo.state = 'failed';
  $('status').textContent = 'WebGPU is not available';
  showError(e);
}
