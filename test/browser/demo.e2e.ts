// The demo page end to end in headless Chromium: train in the tab and see the loss fall; download the model and
// have Node's `npm run zeroshot` accept it; load a model trained by Node and get the same probabilities (to 1e-4)
// as `npm run zeroshot` for the same image and labels; bad files give visible messages. Screenshots of each
// state go to .build/demo-screens/ (not committed).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import * as T from '../../ops/index.ts';
import { SHAPE_WORLD, example, render } from '../../clip/data/scenes.ts';
import { writePng } from '../../clip/io/images.ts';
import { loadClip } from '../../clip/io/weights.ts';
import { denormalize } from '../../clip/preprocess.ts';
import { train } from '../../clip/train.ts';
import { CHROMIUM_ARGS, ROOT, launchChromium, startDemo } from '../../examples/demo/host.ts';
import { tinyRun } from '../train_helpers.ts';

type Demo = { state: string; losses: number[]; step: number; imagesPerSecond: number; results: { probabilities: number[] }[]; error: string; model: string };
const checks: string[] = [];
let failures = 0;
function check(ok: boolean, what: string): void {
  checks.push(`${ok ? '✓' : '✘'} ${what}`);
  if (!ok) failures++;
  console.log(checks[checks.length - 1]);
}
const demoState = (page: Page) => page.evaluate(() => (globalThis as unknown as { __demo?: Demo }).__demo ?? null);
async function waitFor(page: Page, what: string, test: (d: Demo) => boolean, seconds = 300): Promise<Demo> {
  for (let waited = 0; waited < seconds * 10; waited++) {
    const d = await demoState(page);
    if (d && test(d)) return d;
    if (d?.state === 'failed') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const d = await demoState(page);
  throw new Error(`demo: timed out waiting for ${what} (state ${d?.state ?? 'not loaded'}, error '${d?.error ?? ''}')`);
}
const zeroshot = (args: string[]) => spawnSync(process.execPath, ['scripts/run.mjs', 'bin/clipgpu.ts', 'zeroshot', ...args], { encoding: 'utf8' });

// The commands it compares with run the fixed kernel defaults, as the tests do (no tuning on this machine).
process.env.CLIPGPU_TUNE ??= 'off';
const screens = join(ROOT, '.build/demo-screens');
mkdirSync(screens, { recursive: true });
const work = mkdtempSync(join(tmpdir(), 'demo-e2e-'));

// A model trained in Node, and an image, for the comparison.
await T.init();
const run = join(work, 'run');
await train(tinyRun(run, 6));
T.closeGpu();
const image = join(work, 'scene.png');
const chw = new Float32Array(3 * 64 * 64);
render(SHAPE_WORLD, example(SHAPE_WORLD, 3, 1, { pairs: 'heldOut', split: 'test', single: true }), 'test', 64, chw);
writePng(image, denormalize(chw, 64, 64));
const labels = ['red circle', 'blue square', 'green triangle', 'purple diamond', 'white ring'];
const node = zeroshot(['--weights', join(run, 'model.safetensors'), '--image', image, '--labels', labels.join(','), '--json']);
if (node.status !== 0) throw new Error(`npm run zeroshot failed: ${node.stderr}`);
const nodeProbabilities = (JSON.parse(node.stdout) as { images: { probabilities: number[] }[] }).images[0].probabilities;

const server = await startDemo({ run });
const browser = await launchChromium();
const began = Date.now();
try {
  const page = await browser.newPage({ acceptDownloads: true, viewport: { width: 1200, height: 1400 } });
  page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
  await page.goto(`${server.url}/?model=ViT-scenes&batch=32&steps=24&evalEvery=12`);
  const ready = await waitFor(page, 'WebGPU', (d) => d.state !== 'starting', 60);
  check(ready.state === 'ready', `the page opened WebGPU (${(await page.textContent('#status')) ?? ''})`);

  // 1. Train in the tab: the loss falls; the model downloads in the formats Node reads.
  await page.click('#start');
  const trained = await waitFor(page, 'training', (d) => d.state === 'trained');
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const [first, last] = [mean(trained.losses.slice(0, 4)), mean(trained.losses.slice(-4))];
  check(last < first, `training in the tab: loss ${first.toFixed(3)} → ${last.toFixed(3)} over ${trained.step} steps of 32 (${trained.imagesPerSecond.toFixed(1)} images/s)`);
  await page.screenshot({ path: join(screens, '1-trained.png'), fullPage: true });
  const downloads: string[] = [];
  page.on('download', async (d) => {
    const path = join(work, d.suggestedFilename());
    await d.saveAs(path);
    downloads.push(path);
  });
  await page.click('#download');
  for (let i = 0; i < 100 && downloads.length < 2; i++) await new Promise((r) => setTimeout(r, 100));
  const fromTab = zeroshot(['--weights', join(work, 'model.safetensors'), '--vocab', join(work, 'vocab.txt.gz'), '--image', image]);
  check(fromTab.status === 0 && /recorded with the model/.test(fromTab.stderr), `npm run zeroshot accepts the model downloaded from the tab (${downloads.map((d) => d.split('/').pop()).join(', ')})`);

  // 2. A Node-trained model in the tab: the same probabilities as npm run zeroshot.
  await page.click('#loadServed');
  await waitFor(page, 'the served model', (d) => d.model !== '' || d.error !== '', 60);
  await page.setInputFiles('#images', image);
  await page.fill('#labels', labels.join(', '));
  await page.waitForSelector('#results .result');
  await page.click('#classifyButton');
  const classified = await waitFor(page, 'classification', (d) => d.results.length > 0 || d.error !== '', 120);
  const tab = classified.results[0]?.probabilities ?? [];
  const diff = Math.max(...tab.map((p, i) => Math.abs(p - nodeProbabilities[i])));
  const top = (ps: number[]) => ps.indexOf(Math.max(...ps));
  check(tab.length === labels.length && diff <= 1e-4 && top(tab) === top(nodeProbabilities), `the tab and npm run zeroshot agree on a Node-trained model: top-1 '${labels[top(tab)]}', max |Δp| ${diff.toExponential(1)}`);
  await page.screenshot({ path: join(screens, '2-classified.png'), fullPage: true });

  // 3. Bad input gets a visible message naming what is wrong; the trained model stays downloadable.
  const notWeights = join(work, 'notes.safetensors');
  writeFileSync(notWeights, 'these are not weights');
  await page.setInputFiles('#weightsFile', notWeights);
  await page.click('#loadFiles');
  const bad = await waitFor(page, 'an error', (d) => d.error !== '', 30);
  check(/notes\.safetensors: .*(too short|header)/.test(bad.error) && (await page.textContent('#error'))!.includes('notes.safetensors'), `a file that is not safetensors: "${bad.error}"`);
  const otherVocab = join(work, 'other-vocab.txt.gz');
  const small = mkdtempSync(join(tmpdir(), 'demo-vocab-'));
  await T.init();
  await train(tinyRun(small, 2, { vocabSize: 530 }));
  T.closeGpu();
  spawnSync('cp', [join(small, 'vocab.txt.gz'), otherVocab]);
  await page.setInputFiles('#weightsFile', join(run, 'model.safetensors'));
  await page.setInputFiles('#vocabFile', otherVocab);
  await page.click('#loadFiles');
  const mismatch = await waitFor(page, 'a vocabulary error', (d) => /not from the same run/.test(d.error), 30);
  check(true, `a vocabulary from another run: "${mismatch.error}"`);
  const broken = join(work, 'broken.png');
  writeFileSync(broken, 'not a png');
  await page.setInputFiles('#images', broken);
  const undecodable = await waitFor(page, 'an image error', (d) => /broken\.png/.test(d.error), 30);
  check(/broken\.png: not a PNG or JPEG/.test(undecodable.error), `an undecodable image: "${undecodable.error}"`);
  check(!(await page.isDisabled('#download')), 'the model trained in the tab can still be downloaded');
  await page.screenshot({ path: join(screens, '3-errors.png'), fullPage: true });
  // A browser without WebGPU (the flag left out, the GPU disabled) is told so on the page.
  const plain = await launchChromium([...CHROMIUM_ARGS.filter((a) => a !== '--enable-unsafe-webgpu'), '--disable-gpu']);
  try {
    const page = await plain.newPage();
    await page.goto(`${server.url}/`);
    const failed = await waitFor(page, 'the page to give up', (d) => d.state !== 'starting', 60);
    check(failed.state === 'failed' && /exposes no WebGPU/.test((await page.textContent('#error')) ?? ''), `a browser without WebGPU: "${failed.error.slice(0, 60)}…"`);
  } finally {
    await plain.close();
  }
} finally {
  await browser.close();
  server.close();
}
// Node reads the model the tab wrote, key for key.
await T.init();
try {
  const fromTab = loadClip(join(work, 'model.safetensors'));
  check(fromTab.prompts?.classes.length === 48, 'the downloaded weights carry the scene prompts and classes');
  fromTab.dispose();
} catch (e) {
  check(false, `the downloaded weights load in Node: ${(e as Error).message}`);
}
T.closeGpu();
console.log(`demo end to end: ${checks.length - failures} passed, ${failures} failed in ${((Date.now() - began) / 1000).toFixed(0)} s (screenshots in ${screens})`);
process.exit(failures ? 1 : 0);
