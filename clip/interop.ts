// Hand-over to the engines people scale out on, on bytes: open_clip's model config and Hugging Face's
// CLIPModel layout (config, weights with q/k/v split, tokenizer files), and the way back. The Node side
// (clip/io/interop.ts) writes and reads export folders; `npm run export` is the command.
import type { HostTensor } from '../nn/safetensors.ts';
import { ConfigError, visionHeads, type ClipConfig } from './config.ts';
import { CLIP_MEAN, CLIP_STD } from './preprocess.ts';
import type { Tokenizer } from './tokenizer.ts';

/** Host tensors keyed by checkpoint names (a file's, or re-keyed and reshaped from one). */
export type HostTensors = Map<string, HostValues>;
type HostValues = Pick<HostTensor, 'shape' | 'data'>;

const isResNet = (c: ClipConfig) => Array.isArray(c.visionLayers);
/**
 * The width of the vision heads the model really has: visionHeadWidth (64 by default) unless the tower is
 * narrower than one head, which then is a single head as wide as the tower (config.ts visionHeads).
 */
const headWidth = (c: ClipConfig) => (Array.isArray(c.visionLayers) ? c.visionWidth * 32 : c.visionWidth) / visionHeads(c);

// ---- open_clip ----------------------------------------------------------------------------------------------

/**
 * open_clip's model config (the JSON `open_clip.add_model_config` reads and `CLIP(**cfg)` takes): CLIP's
 * QuickGELU and the vision head width.
 */
export function openClipConfig(c: ClipConfig): Record<string, unknown> {
  return {
    embed_dim: c.embedDim,
    quick_gelu: true,
    vision_cfg: { image_size: c.imageResolution, layers: c.visionLayers, width: c.visionWidth, patch_size: c.visionPatchSize, head_width: headWidth(c) },
    text_cfg: { context_length: c.contextLength, vocab_size: c.vocabSize, width: c.transformerWidth, heads: c.transformerHeads, layers: c.transformerLayers },
  };
}

/** open_clip's preprocessing config for this project's transform: OpenAI's mean and std, bicubic, shortest side. */
export function openClipPreprocess(c: ClipConfig): Record<string, unknown> {
  return { size: c.imageResolution, mean: [...CLIP_MEAN], std: [...CLIP_STD], interpolation: 'bicubic', resize_mode: 'shortest' };
}

/** Our config from open_clip's model config (`source` names the file in errors). */
export function configFromOpenClip(json: unknown, source: string): ClipConfig {
  const m = json as { embed_dim?: unknown; quick_gelu?: unknown; vision_cfg?: Record<string, unknown>; text_cfg?: Record<string, unknown> };
  const v = m?.vision_cfg ?? {};
  const t = m?.text_cfg ?? {};
  const int = (where: string, value: unknown, fallback?: number): number => {
    const x = value ?? fallback;
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 1) {
      throw new ConfigError(`${source}: ${where} must be a positive integer, got ${JSON.stringify(value)}`);
    }
    return x;
  };
  if (m?.quick_gelu === false) throw new ConfigError(`${source}: quick_gelu is false; this project's CLIP uses QuickGELU (OpenAI's activation)`);
  const layers = Array.isArray(v.layers)
    ? (v.layers.map((l, i) => int(`vision_cfg.layers[${i}]`, l)) as [number, number, number, number])
    : int('vision_cfg.layers', v.layers);
  if (Array.isArray(layers) && layers.length !== 4) {
    throw new ConfigError(`${source}: vision_cfg.layers must be 4 stage depths for a ResNet, got ${layers.length}`);
  }
  const config: ClipConfig = {
    embedDim: int('embed_dim', m?.embed_dim),
    imageResolution: int('vision_cfg.image_size', v.image_size),
    visionLayers: layers,
    visionWidth: int('vision_cfg.width', v.width),
    visionPatchSize: Array.isArray(layers) ? null : int('vision_cfg.patch_size', v.patch_size),
    contextLength: int('text_cfg.context_length', t.context_length, 77),
    vocabSize: int('text_cfg.vocab_size', t.vocab_size, 49408),
    transformerWidth: int('text_cfg.width', t.width, 512),
    transformerHeads: int('text_cfg.heads', t.heads, 8),
    transformerLayers: int('text_cfg.layers', t.layers, 12),
  };
  const hw = int('vision_cfg.head_width', v.head_width, 64);
  if (hw !== 64) config.visionHeadWidth = hw;
  return config;
}

// ---- Hugging Face -------------------------------------------------------------------------------------------

/** transformers' CLIPConfig for a ViT CLIP (HF's CLIPModel has no ResNet tower). */
export function hfConfig(c: ClipConfig, tokenizer: Tokenizer, logitScale: number): Record<string, unknown> {
  if (isResNet(c)) throw new ConfigError("a ModifiedResNet CLIP has no Hugging Face CLIPModel form (transformers' CLIP is ViT-only): export it --to open_clip");
  const tower = (width: number, heads: number, layers: number) => ({
    hidden_size: width,
    intermediate_size: 4 * width,
    num_attention_heads: heads,
    num_hidden_layers: layers,
    hidden_act: 'quick_gelu',
    layer_norm_eps: 1e-5,
    projection_dim: c.embedDim,
  });
  return {
    architectures: ['CLIPModel'],
    model_type: 'clip',
    projection_dim: c.embedDim,
    logit_scale_init_value: logitScale,
    torch_dtype: 'float32',
    text_config: {
      ...tower(c.transformerWidth, c.transformerHeads, c.transformerLayers),
      max_position_embeddings: c.contextLength,
      vocab_size: c.vocabSize,
      bos_token_id: tokenizer.sot,
      eos_token_id: tokenizer.eot,
      pad_token_id: tokenizer.eot,
      model_type: 'clip_text_model',
    },
    vision_config: {
      ...tower(c.visionWidth, visionHeads(c), c.visionLayers as number),
      image_size: c.imageResolution,
      patch_size: c.visionPatchSize,
      num_channels: 3,
      model_type: 'clip_vision_model',
    },
  };
}

/** Our config from transformers' CLIPConfig. */
export function configFromHf(json: unknown, source: string): ClipConfig {
  const m = json as { model_type?: unknown; projection_dim?: unknown; text_config?: Record<string, unknown>; vision_config?: Record<string, unknown> };
  if (m?.model_type !== 'clip') throw new ConfigError(`${source}: model_type is ${JSON.stringify(m?.model_type)}, not 'clip'`);
  const t = m.text_config ?? {};
  const v = m.vision_config ?? {};
  const int = (where: string, value: unknown, fallback: number): number => {
    const x = value ?? fallback;
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 1) {
      throw new ConfigError(`${source}: ${where} must be a positive integer, got ${JSON.stringify(value)}`);
    }
    return x;
  };
  for (const [where, act] of [['text_config.hidden_act', t.hidden_act], ['vision_config.hidden_act', v.hidden_act]]) {
    if ((act ?? 'quick_gelu') !== 'quick_gelu') throw new ConfigError(`${source}: ${where} is ${JSON.stringify(act)}; this project's CLIP uses quick_gelu`);
  }
  const width = int('vision_config.hidden_size', v.hidden_size, 768);
  const heads = int('vision_config.num_attention_heads', v.num_attention_heads, 12);
  const config: ClipConfig = {
    embedDim: int('projection_dim', m.projection_dim, 512),
    imageResolution: int('vision_config.image_size', v.image_size, 224),
    visionLayers: int('vision_config.num_hidden_layers', v.num_hidden_layers, 12),
    visionWidth: width,
    visionPatchSize: int('vision_config.patch_size', v.patch_size, 32),
    contextLength: int('text_config.max_position_embeddings', t.max_position_embeddings, 77),
    vocabSize: int('text_config.vocab_size', t.vocab_size, 49408),
    transformerWidth: int('text_config.hidden_size', t.hidden_size, 512),
    transformerHeads: int('text_config.num_attention_heads', t.num_attention_heads, 8),
    transformerLayers: int('text_config.num_hidden_layers', t.num_hidden_layers, 12),
  };
  if (width % heads !== 0) throw new ConfigError(`${source}: vision_config.num_attention_heads ${heads} does not divide hidden_size ${width}`);
  if (width / heads !== 64) config.visionHeadWidth = width / heads;
  return config;
}

/**
 * How OpenAI's keys map to transformers' CLIPModel keys, one table for both directions (toHfLayout here,
 * toOpenAiLayout in weights.ts): tensors copied as they are, projections transposed into Linear weights,
 * and per transformer layer (the packed in_proj is split into q/k/v separately).
 */
export const HF_KEYS = {
  copied: [
    ['visual.conv1.weight', 'vision_model.embeddings.patch_embedding.weight'],
    ['visual.class_embedding', 'vision_model.embeddings.class_embedding'],
    ['visual.positional_embedding', 'vision_model.embeddings.position_embedding.weight'],
    // HF calls OpenAI's ln_pre "pre_layrnorm" (sic).
    ...['weight', 'bias'].flatMap((p) => [
      [`visual.ln_pre.${p}`, `vision_model.pre_layrnorm.${p}`],
      [`visual.ln_post.${p}`, `vision_model.post_layernorm.${p}`],
      [`ln_final.${p}`, `text_model.final_layer_norm.${p}`],
    ]),
    ['token_embedding.weight', 'text_model.embeddings.token_embedding.weight'],
    ['positional_embedding', 'text_model.embeddings.position_embedding.weight'],
    ['logit_scale', 'logit_scale'],
  ] as [string, string][],
  transposed: [
    ['visual.proj', 'visual_projection.weight'],
    ['text_projection', 'text_projection.weight'],
  ] as [string, string][],
  /** Within one layer: ours under `resblocks.i.`, theirs under `encoder.layers.i.`. */
  layer: ['weight', 'bias'].flatMap((p) =>
    [
      ['attn.out_proj', 'self_attn.out_proj'],
      ['ln_1', 'layer_norm1'],
      ['ln_2', 'layer_norm2'],
      ['mlp.c_fc', 'mlp.fc1'],
      ['mlp.c_proj', 'mlp.fc2'],
    ].map(([o, h]) => [`${o}.${p}`, `${h}.${p}`]),
  ) as [string, string][],
  towers: [['visual.transformer', 'vision_model'], ['transformer', 'text_model']] as [string, string][],
};

/** A 2-D host tensor transposed. */
export function transposeHost(t: HostValues): HostValues {
  const [r, c] = t.shape;
  const data = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) data[j * r + i] = t.data[i * c + j];
  return { shape: [c, r], data };
}

/**
 * OpenAI-layout tensors in transformers' CLIPModel layout: each packed in_proj split into q/k/v projections,
 * the projections transposed into Linear weights (the inverse of weights.ts's toOpenAiLayout).
 */
export function toHfLayout(tensors: HostTensors, c: ClipConfig): HostTensors {
  if (isResNet(c)) throw new ConfigError("a ModifiedResNet CLIP has no Hugging Face CLIPModel form: export it --to open_clip");
  const out: HostTensors = new Map();
  const get = (k: string) => {
    const t = tensors.get(k);
    if (!t) throw new ConfigError(`OpenAI-layout CLIP state: key '${k}' is missing`);
    return t;
  };
  /** Rows [part·n, (part+1)·n) of a packed [3n, …] tensor. */
  const third = (k: string, part: number) => {
    const t = get(k);
    const n = t.shape[0] / 3;
    const per = t.data.length / 3;
    return { shape: [n, ...t.shape.slice(1)], data: t.data.slice(part * per, (part + 1) * per) };
  };
  for (const [ours, hf] of HF_KEYS.towers) {
    const layers = ours === 'transformer' ? c.transformerLayers : (c.visionLayers as number);
    for (let i = 0; i < layers; i++) {
      const [a, b] = [`${ours}.resblocks.${i}`, `${hf}.encoder.layers.${i}`];
      ['q', 'k', 'v'].forEach((p, part) => {
        out.set(`${b}.self_attn.${p}_proj.weight`, third(`${a}.attn.in_proj_weight`, part));
        out.set(`${b}.self_attn.${p}_proj.bias`, third(`${a}.attn.in_proj_bias`, part));
      });
      for (const [o, h] of HF_KEYS.layer) out.set(`${b}.${h}`, get(`${a}.${o}`));
    }
  }
  for (const [o, h] of HF_KEYS.copied) out.set(h, get(o));
  for (const [o, h] of HF_KEYS.transposed) out.set(h, transposeHost(get(o)));
  return out;
}

/** transformers' CLIPTokenizer files for a tokenizer: vocab.json, merges.txt and the special tokens. */
export function hfTokenizerFiles(tokenizer: Tokenizer, contextLength: number): Record<string, string> {
  const vocab = Object.fromEntries(tokenizer.decoder.map((token, id) => [token, id]));
  const special = { bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>', pad_token: '<|endoftext|>' };
  return {
    'vocab.json': JSON.stringify(vocab),
    'merges.txt': ['#version: 0.2', ...tokenizer.merges, ''].join('\n'),
    'special_tokens_map.json': JSON.stringify(special, null, 2),
    'tokenizer_config.json': JSON.stringify({ tokenizer_class: 'CLIPTokenizer', model_max_length: contextLength, do_lower_case: true, ...special }, null, 2),
  };
}

/**
 * The merges of a CLIPTokenizer's merges.txt, checked against its vocab.json: the tokenizer this project
 * builds from them must give every token the id vocab.json gives it.
 */
export function mergesFromHf(mergesTxt: string, vocabJson: unknown, source: string): string[] {
  const lines = mergesTxt.split('\n');
  const merges = (lines[0]?.startsWith('#version') ? lines.slice(1) : lines).filter((l) => l.trim().length > 0);
  const vocab = vocabJson as Record<string, number>;
  if (!vocab || typeof vocab !== 'object') throw new ConfigError(`${source}: vocab.json is not an object of token ids`);
  const expected = 512 + merges.length + 2;
  if (Object.keys(vocab).length !== expected) {
    throw new ConfigError(
      `${source}: vocab.json has ${Object.keys(vocab).length} tokens but merges.txt implies ${expected} ` +
        `(512 bytes, ${merges.length} merges, 2 special)`,
    );
  }
  merges.forEach((line, i) => {
    const [a, b] = line.split(' ');
    if (vocab[a + b] !== 512 + i) throw new ConfigError(`${source}: merge ${i + 1} ('${line}') is token ${vocab[a + b]} in vocab.json, expected ${512 + i}`);
  });
  return merges;
}
