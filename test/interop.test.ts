// Export to open_clip and Hugging Face, and back: identical tensors and logits after a round trip in each
// format, configs that round-trip, the q/k/v split inverting the packing, tokenizer files that give the same
// ids, fine-tuning from an export, and clear errors for folders that do not fit together.
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '../ops/index.ts';
import { CONFIGS, ConfigError, visionHeads } from '../clip/config.ts';
import { configFromHf, configFromOpenClip, hfConfig, hfTokenizerFiles, mergesFromHf, openClipConfig, toHfLayout } from '../clip/interop.ts';
import { exportRun, loadExport } from '../clip/io/interop.ts';
import { saveBpe } from '../clip/io/vocab.ts';
import { loadClip, saveClip } from '../clip/io/weights.ts';
import { CLIP } from '../clip/model.ts';
import { Tokenizer, trainBpe } from '../clip/tokenizer.ts';
import { train } from '../clip/train.ts';
import { toOpenAiLayout } from '../clip/weights.ts';
import { FileError } from '../core/io/files.ts';
import { serializeSafetensorsHost } from '../nn/safetensors.ts';
import { assertThrows, suite } from './harness.ts';
import { metricsOf, tinyRun } from './train_helpers.ts';

const test = suite('interop');
const tmp = (name: string) => mkdtempSync(join(tmpdir(), `${name}-`));
const CAPTIONS = ['a red circle', 'a small blue square above a large red circle', 'there is an orange ring', 'a green triangle left of a white cross'];
const tokenizer = new Tokenizer(trainBpe(CAPTIONS, 560)); // the corpus runs out of pairs at 525 tokens
const VIT = { embedDim: 16, imageResolution: 16, visionLayers: 2, visionWidth: 32, visionPatchSize: 8, visionHeadWidth: 8, contextLength: 12, vocabSize: tokenizer.vocabSize, transformerWidth: 32, transformerHeads: 2, transformerLayers: 2 };

/** A run folder as `npm run train` leaves it: model.safetensors (with prompts) and vocab.txt.gz. */
async function makeRun(): Promise<string> {
  const dir = tmp('run');
  T.manualSeed(11);
  const model = new CLIP(VIT);
  model.prompts = { templates: ['{a} {}'], classes: ['red circle', 'blue square'] };
  await saveClip(join(dir, 'model.safetensors'), model);
  model.dispose();
  saveBpe(join(dir, 'vocab.txt.gz'), tokenizer.merges);
  return dir;
}

async function logits(model: CLIP, tok: Tokenizer): Promise<Float32Array> {
  model.eval();
  const images = T.randNormal([3, 3, 16, 16], 0, 1, new T.Generator(5));
  const tokens = T.Tensor.from(tok.tokenize(CAPTIONS.slice(0, 3), { contextLength: 12 }), [3, 12], 'i32');
  const out = T.noGrad(() => model.forward(images, tokens));
  const values = (await out.logitsPerImage.data()) as Float32Array;
  for (const t of [images, tokens, ...Object.values(out)]) t.dispose();
  return values;
}

for (const format of ['open_clip', 'hf'] as const) {
  test(`${format}: export → import gives identical tensors, logits, prompts and token ids`, async () => {
    const run = await makeRun();
    const out = join(tmp(`export-${format}`), 'exported');
    const files = exportRun(run, format, out);
    assert.ok(files.includes('README.md') && existsSync(join(out, 'README.md')));
    const original = loadClip(join(run, 'model.safetensors'));
    const back = loadExport(out);
    assert.equal(back.model.config, original.config);
    assert.equal(back.model.prompts, original.prompts);
    for (const [key, t] of original.stateDict()) assert.equal(Array.from(await back.model.stateDict().get(key)!.data()), Array.from(await t.data()), key);
    assert.equal(Array.from(await logits(back.model, back.tokenizer)), Array.from(await logits(original, tokenizer)));
    for (const text of CAPTIONS) assert.equal(Array.from(back.tokenizer.tokenize([text])), Array.from(tokenizer.tokenize([text])), text);
    original.dispose();
    back.model.dispose();
    // The eval and zeroshot commands read the folder as it is (its prompts, its tokenizer).
    const image = join(out, '..', 'grey.png');
    writeFileSync(image, (await import('../clip/preprocess.ts')).encodePng({ width: 8, height: 8, data: new Float32Array(192).fill(90) }));
    const run2 = spawnSync(process.execPath, ['scripts/run.mjs', 'bin/clipgpu.ts', 'zeroshot', '--weights', out, '--image', image, '--json'], { encoding: 'utf8' });
    assert.is(run2.status, 0, run2.stderr);
    assert.equal(JSON.parse(run2.stdout).labels, ['red circle', 'blue square']);
    assert.match(run2.stderr, /recorded with the model/);
  });
}

test('configs round-trip through open_clip\'s and transformers\' schemas; ResNets go to open_clip only', () => {
  for (const c of [VIT, { ...CONFIGS['ViT-B/32'] }, { ...CONFIGS.RN50 }, { ...CONFIGS['ViT-scenes'] }]) {
    assert.equal(configFromOpenClip(JSON.parse(JSON.stringify(openClipConfig(c))), 'open_clip.json'), c);
    if (Array.isArray(c.visionLayers)) assert.throws(() => hfConfig(c, tokenizer, 2.6), /ModifiedResNet CLIP has no Hugging Face CLIPModel form/);
    else assert.equal(configFromHf(JSON.parse(JSON.stringify(hfConfig(c, tokenizer, 2.6))), 'config.json'), c);
  }
  // A tower narrower than one 64-wide head has one head as wide as itself: both schemas say so (not 0.5 heads).
  const narrow = { ...VIT, visionWidth: 32, visionHeadWidth: undefined };
  const hf = hfConfig(narrow, tokenizer, 2.6) as { vision_config: { num_attention_heads: number } };
  assert.is(hf.vision_config.num_attention_heads, 1);
  assert.is((openClipConfig(narrow).vision_cfg as { head_width: number }).head_width, 32);
  for (const back of [configFromHf(JSON.parse(JSON.stringify(hf)), 'config.json'), configFromOpenClip(JSON.parse(JSON.stringify(openClipConfig(narrow))), 'open_clip.json')]) {
    assert.equal([back.visionWidth, visionHeads(back)], [32, 1]);
  }
  assert.throws(() => configFromOpenClip({ embed_dim: 16, quick_gelu: false, vision_cfg: {}, text_cfg: {} }, 'x.json'), /x\.json: quick_gelu is false/);
  assert.throws(() => configFromHf({ model_type: 'clip', text_config: { hidden_act: 'gelu' } }, 'config.json'), /config\.json: text_config\.hidden_act is "gelu"/);
});

test('the Hugging Face q/k/v split inverts the packing, and its tokenizer files give the same vocabulary', async () => {
  T.manualSeed(3);
  const model = new CLIP(VIT);
  const host = new Map<string, { shape: number[]; data: Float32Array | Int32Array }>();
  for (const [k, t] of model.stateDict()) host.set(k, { shape: [...t.shape], data: (await t.data()) as Float32Array });
  model.dispose();
  const hf = toHfLayout(host, VIT);
  assert.equal(hf.get('vision_model.encoder.layers.1.self_attn.k_proj.weight')!.shape, [32, 32]);
  const back = toOpenAiLayout({ tensors: new Map([...hf].map(([k, t]) => [k, { ...t, dtype: 'f32' as const, fileDtype: 'F32' }])), metadata: {} });
  assert.equal([...back.keys()].sort(), [...host.keys()].sort());
  for (const [k, t] of host) assert.equal(Array.from(back.get(k)!.data), Array.from(t.data), k);
  const files = hfTokenizerFiles(tokenizer, 12);
  const merges = mergesFromHf(files['merges.txt'], JSON.parse(files['vocab.json']), 'hf');
  assert.equal(merges, [...tokenizer.merges]);
  const vocab = JSON.parse(files['vocab.json']) as Record<string, number>;
  vocab['red</w>'] = 3;
  assert.throws(() => mergesFromHf(files['merges.txt'], vocab, 'hf-bad'), /hf-bad: merge \d+ \('.*'\) is token/);
});

test('bad exports and imports: a run without a model, an occupied --out, a config or tokenizer that does not fit the weights', async () => {
  await assertThrows(() => exportRun(tmp('empty'), 'hf', tmp('x')), FileError, /--run .*: no model\.safetensors there/);
  const run = await makeRun();
  const occupied = tmp('occupied');
  writeFileSync(join(occupied, 'keep.txt'), 'mine');
  await assertThrows(() => exportRun(run, 'open_clip', occupied), FileError, /--out .*occupied.* exists and is not empty: choose another folder or pass --overwrite/);
  assert.is(readFileSync(join(occupied, 'keep.txt'), 'utf8'), 'mine');
  const out = join(tmp('bad'), 'export');
  exportRun(run, 'open_clip', out);
  const cfgPath = join(out, 'open_clip_config.json');
  const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
  cfg.model_cfg.vision_cfg.width = 64;
  writeFileSync(cfgPath, JSON.stringify(cfg));
  await assertThrows(() => loadExport(out), ConfigError, /the config disagrees with open_clip_model\.safetensors: visionWidth 64 vs 32 in the weights/);
  const hfOut = join(tmp('badhf'), 'export');
  exportRun(run, 'hf', hfOut);
  const other = new Tokenizer(trainBpe(CAPTIONS, 520));
  writeFileSync(join(hfOut, 'vocab.json'), hfTokenizerFiles(other, 12)['vocab.json']);
  writeFileSync(join(hfOut, 'merges.txt'), hfTokenizerFiles(other, 12)['merges.txt']);
  await assertThrows(() => loadExport(hfOut), ConfigError, /the tokenizer has 520 tokens but the model embeds 525/);
  writeFileSync(join(hfOut, 'model.safetensors'), serializeSafetensorsHost([['logit_scale', { shape: [], data: new Float32Array([1]) }]]));
  await assertThrows(() => loadExport(hfOut), ConfigError, /key '[\w.]+' is missing/);
});

test('--init-from an export: fine-tuning starts from exactly its weights, with its tokenizer', async () => {
  const run = await makeRun();
  const exported = join(tmp('init'), 'export');
  exportRun(run, 'hf', exported);
  const out = tmp('finetune');
  // A learning rate of 1e-12 leaves the weights where they started: the saved model must equal the export.
  await train(tinyRun(out, 1, { config: undefined, initFrom: exported, lr: 1e-12, warmup: 0, weightDecay: 0, clipGrad: 0 }));
  const start = loadExport(exported).model;
  const tuned = loadClip(join(out, 'model.safetensors'));
  for (const [key, t] of start.stateDict()) {
    const [a, b] = [await t.data(), await tuned.stateDict().get(key)!.data()];
    assert.ok(a.every((v, i) => Math.abs(v - b[i]) <= 1e-6 * (1 + Math.abs(v))), key);
  }
  assert.ok(existsSync(join(out, 'vocab.txt.gz')), 'the tokenizer travels with the run');
  assert.is(metricsOf(out).filter((r) => 'loss' in r).length, 1);
  start.dispose();
  tuned.dispose();
  await assertThrows(() => train(tinyRun(tmp('both'), 1, { initFrom: exported, resume: true })), RangeError, /--resume continues the run's checkpoint; --init-from starts a new run/);
});

test.run();
