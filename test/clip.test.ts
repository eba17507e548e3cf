// CLIP: parity with OpenAI's reference for both oracle fixtures (test/fixtures), config inference on unseen sizes, and the
// weight loaders for every layout on small generated files.
import * as assert from 'uvu/assert';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '../ops/index.ts';
import { ConfigError, inferConfig, visionHeads, type ClipConfig } from '../clip/config.ts';
import { CLIP, VisionTransformer } from '../clip/model.ts';
import { TOLERANCE, parity } from '../clip/parity.ts';
import { loadClip, saveClip, tokenizerFor } from '../clip/io/weights.ts';
import { trainBpe } from '../clip/tokenizer.ts';
import { saveBpe } from '../clip/io/vocab.ts';
import { readSafetensors, saveSafetensors } from '../nn/io/safetensors.ts';
import { FIXTURES, assertClose, assertThrows, suite } from './harness.ts';

const test = suite('clip');
const dir = mkdtempSync(join(tmpdir(), 'clip-'));

for (const name of ['vit_tiny', 'rn_tiny']) {
  test(`parity with openai/CLIP: ${name} (features, logits, train loss, every gradient)`, async () => {
    const [weights, io] = [`${FIXTURES}/${name}.safetensors`, `${FIXTURES}/${name}.io.safetensors`];
    const r = await parity(readSafetensors(weights), readSafetensors(io), weights, io);
    assert.ok(r.features <= TOLERANCE.features, `features ${r.features}`);
    assert.ok(r.logits <= TOLERANCE.logits, `logits ${r.logits}`);
    assert.ok(r.loss <= TOLERANCE.loss, `loss ${r.loss}`);
    assert.ok(r.grads <= TOLERANCE.grads, `grads ${r.grads} (${r.worst_grad})`);
  });
}

// Two text heads at width 64: not the reference's width/64 rule, so loading must take heads from the metadata.
const SMALL_VIT: ClipConfig = { embedDim: 24, imageResolution: 24, visionLayers: 3, visionWidth: 128, visionPatchSize: 6, contextLength: 9, vocabSize: 300, transformerWidth: 64, transformerHeads: 2, transformerLayers: 3 };
const SMALL_RN: ClipConfig = { embedDim: 16, imageResolution: 32, visionLayers: [2, 1, 1, 2], visionWidth: 4, visionPatchSize: null, contextLength: 7, vocabSize: 260, transformerWidth: 128, transformerHeads: 2, transformerLayers: 1 };

test('the config is inferred from shapes alone, for sizes and depths not seen in the fixtures', () => {
  for (const config of [SMALL_VIT, SMALL_RN]) {
    const model = new CLIP(config);
    const shapes = new Map([...model.stateDict()].map(([k, t]) => [k, t.shape]));
    // Heads are not visible in shapes; inferConfig applies the reference's width/64 rule.
    assert.equal(inferConfig(shapes), { ...config, transformerHeads: Math.max(1, Math.floor(config.transformerWidth / 64)) });
    model.dispose();
  }
  assert.is(visionHeads(SMALL_VIT), 2);
  assert.is(visionHeads(SMALL_RN), 2);
  assert.throws(() => inferConfig(new Map([['visual.proj', [2, 2]]])), (e: Error) => e instanceof ConfigError && /visual\.conv1\.weight/.test(e.message));
});

test('initialisation follows the reference (bn3 zero, logit scale ln(1/0.07), embedding stds)', async () => {
  const model = new CLIP(SMALL_RN);
  const sd = model.stateDict();
  assertClose([await sd.get('logit_scale')!.item()], [Math.log(1 / 0.07)], 'logit_scale', { atol: 1e-6 });
  assert.ok((await sd.get('visual.layer1.0.bn3.weight')!.data()).every((v) => v === 0));
  const tok = Array.from(await sd.get('token_embedding.weight')!.data());
  const std = Math.sqrt(tok.reduce((a, v) => a + v * v, 0) / tok.length);
  assert.ok(Math.abs(std - 0.02) < 0.002, `token embedding std ${std}`);
  model.dispose();
});

/** HF's key layout, written here as the inverse of our mapping (split q/k/v, transposed projections). */
async function saveAsHf(path: string, model: CLIP, metadata: Record<string, string>): Promise<void> {
  const sd = model.stateDict();
  const out: [string, T.Tensor][] = [];
  const tower = (ours: string, hf: string, layers: number, width: number) => {
    for (let i = 0; i < layers; i++) {
      const a = `${ours}.resblocks.${i}`;
      const b = `${hf}.encoder.layers.${i}`;
      ['q', 'k', 'v'].forEach((p, j) => {
        out.push([`${b}.self_attn.${p}_proj.weight`, T.narrow(sd.get(`${a}.attn.in_proj_weight`)!, 0, j * width, width)]);
        out.push([`${b}.self_attn.${p}_proj.bias`, T.narrow(sd.get(`${a}.attn.in_proj_bias`)!, 0, j * width, width)]);
      });
      for (const [o, h] of [['attn.out_proj', 'self_attn.out_proj'], ['ln_1', 'layer_norm1'], ['ln_2', 'layer_norm2'], ['mlp.c_fc', 'mlp.fc1'], ['mlp.c_proj', 'mlp.fc2']]) {
        out.push([`${b}.${h}.weight`, sd.get(`${a}.${o}.weight`)!], [`${b}.${h}.bias`, sd.get(`${a}.${o}.bias`)!]);
      }
    }
  };
  const c = model.config;
  tower('visual.transformer', 'vision_model', c.visionLayers as number, c.visionWidth);
  tower('transformer', 'text_model', c.transformerLayers, c.transformerWidth);
  const t = (k: string) => T.contiguous(T.transpose(sd.get(k)!));
  out.push(
    ['vision_model.embeddings.patch_embedding.weight', sd.get('visual.conv1.weight')!],
    ['vision_model.embeddings.class_embedding', sd.get('visual.class_embedding')!],
    ['vision_model.embeddings.position_embedding.weight', sd.get('visual.positional_embedding')!],
    ['vision_model.pre_layrnorm.weight', sd.get('visual.ln_pre.weight')!], ['vision_model.pre_layrnorm.bias', sd.get('visual.ln_pre.bias')!],
    ['vision_model.post_layernorm.weight', sd.get('visual.ln_post.weight')!], ['vision_model.post_layernorm.bias', sd.get('visual.ln_post.bias')!],
    ['text_model.final_layer_norm.weight', sd.get('ln_final.weight')!], ['text_model.final_layer_norm.bias', sd.get('ln_final.bias')!],
    ['visual_projection.weight', t('visual.proj')], ['text_projection.weight', t('text_projection')],
    ['text_model.embeddings.token_embedding.weight', sd.get('token_embedding.weight')!],
    ['text_model.embeddings.position_embedding.weight', sd.get('positional_embedding')!],
    ['logit_scale', sd.get('logit_scale')!],
  );
  await saveSafetensors(path, out.map(([k, v]) => [k, T.contiguous(v)]), metadata);
}

test('probe features: a ViT\'s representation is its embedding before the projection; a ResNet\'s is its embedding', async () => {
  for (const config of [SMALL_VIT, SMALL_RN]) {
    const model = new CLIP(config);
    const images = T.randNormal([3, 3, config.imageResolution, config.imageResolution]);
    const rep = model.imageRepresentation(images);
    const embedding = model.encodeImage(images);
    const width = Array.isArray(config.visionLayers) ? config.embedDim : config.visionWidth;
    assert.equal(rep.shape, [3, width]);
    const projected = model.visual instanceof VisionTransformer ? T.matmul(rep, model.visual.proj) : rep;
    assertClose(await projected.data(), await embedding.data(), `${config.visionPatchSize ? 'ViT' : 'RN'} representation`, { atol: 1e-5, rtol: 1e-5 });
    model.dispose();
  }
});

test('OpenAI, open_clip (text tower under text.) and Hugging Face layouts load to the same model', async () => {
  const model = new CLIP(SMALL_VIT);
  model.eval();
  const images = T.keep(T.randNormal([2, 3, 24, 24]));
  const tokens = T.keep(T.Tensor.from(Int32Array.from([299, 5, 7, 0, 0, 0, 0, 0, 0, 299, 9, 8, 7, 6, 299, 0, 0, 0]).map((v, i) => (v === 299 ? 299 : v + (i % 3))), [2, 9], 'i32'));
  const reference = T.noGrad(() => model.forward(images, tokens));
  const want = await reference.logitsPerImage.data();
  const openai = join(dir, 'openai.safetensors');
  await saveClip(openai, model);
  const openClip = join(dir, 'open_clip.safetensors');
  const text = /^(transformer|token_embedding|positional_embedding|ln_final|text_projection)/;
  const meta = { config: JSON.stringify({ transformer_heads: 2 }) };
  await saveSafetensors(openClip, [...model.stateDict()].map(([k, v]) => [text.test(k) ? `text.${k}` : k, v]), meta);
  const hf = join(dir, 'hf.safetensors');
  await saveAsHf(hf, model, meta);
  for (const path of [openai, openClip, hf]) {
    const loaded = loadClip(path);
    loaded.eval();
    const out = T.noGrad(() => loaded.forward(images, tokens));
    assertClose(await out.logitsPerImage.data(), want, `logits after loading ${path}`, { atol: 1e-5, rtol: 1e-5 });
    loaded.dispose();
  }
  model.dispose();
});

test('a vision head width other than 64 is kept through save and load (it changes the outputs)', async () => {
  const config: ClipConfig = { ...SMALL_VIT, visionHeadWidth: 16 };
  assert.is(visionHeads(config), SMALL_VIT.visionWidth / 16);
  assert.throws(() => visionHeads({ ...SMALL_VIT, visionHeadWidth: 48 }), /visionHeadWidth 48 does not divide the vision attention width 128/);
  const model = new CLIP(config);
  model.eval();
  const images = T.keep(T.randNormal([2, 3, 24, 24]));
  const tokens = T.keep(T.Tensor.from(Int32Array.from([299, 5, 7, 0, 0, 0, 0, 0, 0, 299, 9, 8, 7, 6, 299, 0, 0, 0]), [2, 9], 'i32'));
  const features = async (m: CLIP) => T.noGrad(() => m.encodeImage(images)).data();
  const want = await features(model);
  const path = join(dir, 'head-width.safetensors');
  await saveClip(path, model);
  const loaded = loadClip(path);
  loaded.eval();
  assert.is(loaded.config.visionHeadWidth, 16);
  assertClose(await features(loaded), want, 'image features after loading', { atol: 1e-5, rtol: 1e-5 });
  // The same weights read as one 64-wide head per 64 channels give different features.
  const asDefault = new CLIP(SMALL_VIT);
  asDefault.eval();
  asDefault.loadStateDict(model.stateDict());
  const other = await features(asDefault);
  assert.ok(other.some((v, i) => Math.abs(v - want[i]) > 1e-3));
  for (const m of [model, loaded, asDefault]) m.dispose();
  images.dispose();
  tokens.dispose();
});

test('tokenizerFor: the vocabulary beside the weights, else CLIP\'s; a named vocabulary must exist', () => {
  const run = join(dir, 'run');
  mkdirSync(run, { recursive: true });
  const weights = join(run, 'model.safetensors');
  assert.is(tokenizerFor(weights, 49408).vocabSize, 49408);
  saveBpe(join(run, 'vocab.txt.gz'), trainBpe(['a red circle', 'a blue square above a red circle'], 530));
  const own = tokenizerFor(weights, 530);
  assert.ok(own.vocabSize <= 530, `vocabulary of ${own.vocabSize}`);
  assert.throws(() => tokenizerFor(weights, 530, join(run, 'missing.txt.gz')), /missing\.txt\.gz: cannot read/);
});

test('a wrong or partial weights file gets a clear error', async () => {
  const partial = join(dir, 'partial.safetensors');
  const model = new CLIP(SMALL_VIT);
  await saveSafetensors(partial, [...model.stateDict()].filter(([k]) => !k.startsWith('visual.ln_post')));
  await assertThrows(() => loadClip(partial), ConfigError, /partial\.safetensors/, /missing keys: visual\.ln_post\.weight, visual\.ln_post\.bias/);
  const notClip = join(dir, 'other.safetensors');
  await saveSafetensors(notClip, [['weight', T.ones([2, 2])]]);
  await assertThrows(() => loadClip(notClip), ConfigError, /key '\w[\w.]*' is missing/);
  model.dispose();
});

test.run();
