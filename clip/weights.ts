// CLIP weights on bytes. OpenAI's layout is the model's own (a walk over names); open_clip's is the same with
// the text tower optionally under `text.`; Hugging Face's is mapped key by key, with its separate q/k/v
// projections packed into in_proj_weight / in_proj_bias. clip/io/weights.ts reads and writes the files.
import * as T from '../ops/index.ts';
import { serializeSafetensors, type SafetensorsFile } from '../nn/safetensors.ts';
import { ConfigError, inferConfig, type ClipConfig } from './config.ts';
import { HF_KEYS, transposeHost, type HostTensors } from './interop.ts';
import { CLIP } from './model.ts';
import type { Prompts } from './prompts.ts';

/** The key layouts weights come in: OpenAI's (also open_clip's), open_clip with its own names, Hugging Face's. */
export type Layout = 'openai' | 'open_clip' | 'hf';

/** Which layout a set of keys is in. */
export function detectLayout(keys: Iterable<string>): Layout {
  const list = [...keys];
  if (list.some((k) => k.startsWith('vision_model.') || k.startsWith('text_model.'))) return 'hf';
  if (list.some((k) => k.startsWith('text.'))) return 'open_clip';
  return 'openai';
}

/**
 * Buffers PyTorch files carry that the model has no use for: the scalars OpenAI's TorchScript files keep, which
 * its build_model drops (the shapes tell them), and batch norm's step counters (`num_batches_tracked`, read only
 * when a BatchNorm's momentum is None; CLIP's is 0.1).
 */
const ignoredBuffer = (key: string) => ['input_resolution', 'context_length', 'vocab_size'].includes(key) || key.endsWith('.num_batches_tracked');

/** Host tensors re-keyed to OpenAI's layout (HF q/k/v concatenated on the host). */
export function toOpenAiLayout(file: SafetensorsFile): HostTensors {
  const layout = detectLayout(file.tensors.keys());
  const out: HostTensors = new Map();
  if (layout !== 'hf') {
    for (const [k, t] of file.tensors) if (!ignoredBuffer(k)) out.set(layout === 'open_clip' ? k.replace(/^text\./, '') : k, t);
    return out;
  }
  const get = (k: string) => {
    const t = file.tensors.get(k);
    if (!t) throw new ConfigError(`Hugging Face CLIP checkpoint: key '${k}' is missing`);
    return t;
  };
  const concat = (keys: string[]) => {
    const parts = keys.map(get);
    const data = new Float32Array(parts.reduce((n, p) => n + p.data.length, 0));
    let at = 0;
    for (const p of parts) {
      data.set(p.data, at);
      at += p.data.length;
    }
    return { shape: [parts.reduce((n, p) => n + p.shape[0], 0), ...parts[0].shape.slice(1)], data };
  };
  const layers = (prefix: string) =>
    new Set(
      [...file.tensors.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length).split('.')[0]),
    ).size;
  for (const [ours, hf] of HF_KEYS.towers) {
    for (let i = 0; i < layers(`${hf}.encoder.layers.`); i++) {
      const [a, b] = [`${hf}.encoder.layers.${i}`, `${ours}.resblocks.${i}`];
      out.set(`${b}.attn.in_proj_weight`, concat(['q', 'k', 'v'].map((p) => `${a}.self_attn.${p}_proj.weight`)));
      out.set(`${b}.attn.in_proj_bias`, concat(['q', 'k', 'v'].map((p) => `${a}.self_attn.${p}_proj.bias`)));
      for (const [o, h] of HF_KEYS.layer) out.set(`${b}.${o}`, get(`${a}.${h}`));
    }
  }
  for (const [o, h] of HF_KEYS.copied) out.set(o, get(h));
  for (const [o, h] of HF_KEYS.transposed) out.set(o, transposeHost(get(h)));
  return out;
}

/** What a weights file may not say about its model (the heads), and the precision to load it in. */
export interface LoadOptions {
  /** The vision tower's head width (open_clip's head_width), for weights whose metadata does not record it. */
  visionHeadWidth?: number;
  /** The text tower's head count, likewise. */
  transformerHeads?: number;
  /** Hears what could not be known from the file (heads assumed 64 wide, as OpenAI's build_model does). */
  note?: (line: string) => void;
  /** 'f16': the weights converted for f16 inference (CLIP.half()) whatever the file holds (F32, F16, BF16). */
  precision?: 'f32' | 'f16';
}

/**
 * The config of a parsed weights file (`path` names it in errors), without touching the GPU: inferred from the
 * shapes. Shapes cannot tell the attention heads: they come from the options, else from a config in the file's
 * metadata (ours, or OpenAI-style snake_case), else OpenAI's rule (64-wide heads), which `note` is told about.
 */
export function configOf(file: SafetensorsFile, path: string, { visionHeadWidth, transformerHeads, note }: LoadOptions = {}): ClipConfig {
  const config = inferConfig(new Map([...toOpenAiLayout(file)].map(([k, t]) => [k, t.shape])));
  const heads = metadataHeads(file.metadata.config);
  const text = transformerHeads ?? heads.text;
  const vision = visionHeadWidth ?? heads.visionHeadWidth;
  if (text) config.transformerHeads = text;
  if (vision) config.visionHeadWidth = vision;
  // A recorded config without a vision head width means the default (64-wide) heads; no config means unknown.
  if (!text || (!vision && !heads.recorded)) {
    note?.(
      `${path}: its metadata does not record the attention heads; assuming 64-wide heads ` +
        `(${[!vision && 'vision', !text && 'text'].filter(Boolean).join(' and ')}), as OpenAI's models have — ` +
        'pass the vision head width / text head count if it was trained otherwise',
    );
  }
  return config;
}

/** A CLIP of `config` holding host tensors in OpenAI's layout (`path` names their file in errors). */
export function clipFromTensors(tensors: HostTensors, config: ClipConfig, path: string): CLIP {
  // NaN/Inf weights (a diverged or damaged file) would only show up as NaN probabilities downstream.
  for (const [k, t] of tensors) {
    let bad = 0;
    for (let i = 0; i < t.data.length; i++) if (!Number.isFinite(t.data[i])) bad++;
    if (bad) {
      throw new ConfigError(
        `${path}: '${k}' holds ${bad} non-finite value${bad === 1 ? '' : 's'} (NaN or Inf) of ${t.data.length}: ` +
          'these weights are broken (a diverged run?)',
      );
    }
  }
  const model = new CLIP(config);
  const own = model.stateDict();
  const gpu = new Map<string, T.Tensor>();
  try {
    for (const [k, t] of tensors) {
      const target = own.get(k);
      // A 0-d tensor may be stored as [1] (logit_scale in several exports): same size, the model's shape.
      const shape = target && target.size === t.data.length && target.shape.length !== t.shape.length ? target.shape : t.shape;
      gpu.set(k, T.keep(T.Tensor.from(t.data, shape, t.data instanceof Int32Array ? 'i32' : 'f32')));
    }
    model.loadStateDict(gpu);
  } catch (e) {
    model.dispose();
    throw new ConfigError(`${path}: ${(e as Error).message}`);
  } finally {
    for (const t of gpu.values()) t.dispose();
  }
  return model;
}

/** Builds a CLIP from a parsed weights file alone: layout detected, config as configOf says, prompts if recorded. */
export function clipFromSafetensors(file: SafetensorsFile, path: string, options: LoadOptions = {}): CLIP {
  const model = clipFromTensors(toOpenAiLayout(file), configOf(file, path, options), path);
  model.prompts = metadataPrompts(path, file.metadata.zeroshot);
  return options.precision === 'f16' ? model.half() : model;
}

/** The heads a config in the metadata records (`recorded`: there is such a config). */
function metadataHeads(json: string | undefined): { recorded: boolean; text: number | null; visionHeadWidth: number | null } {
  const positive = (v: unknown) => (typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : null);
  if (!json) return { recorded: false, text: null, visionHeadWidth: null };
  try {
    const c = JSON.parse(json) as { transformerHeads?: unknown; transformer_heads?: unknown; visionHeadWidth?: unknown; vision_head_width?: unknown };
    const text = positive(c.transformerHeads ?? c.transformer_heads);
    return { recorded: text !== null, text, visionHeadWidth: positive(c.visionHeadWidth ?? c.vision_head_width) };
  } catch {
    return { recorded: false, text: null, visionHeadWidth: null };
  }
}

/** The zero-shot prompts a run recorded (`zeroshot` metadata: {"templates": [...], "classes": [...]}). */
function metadataPrompts(path: string, json: string | undefined): Prompts | null {
  if (json === undefined) return null;
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (e) {
    throw new ConfigError(`${path}: metadata 'zeroshot' is not valid JSON (${(e as Error).message})`);
  }
  const strings = (v: unknown) => Array.isArray(v) && v.length > 0 && v.every((s) => typeof s === 'string');
  const p = value as Partial<Prompts> | null;
  if (!p || !strings(p.templates) || !strings(p.classes)) {
    throw new ConfigError(`${path}: metadata 'zeroshot' must hold non-empty string arrays 'templates' and 'classes'`);
  }
  return { templates: p.templates!, classes: p.classes! };
}

/**
 * The model in OpenAI's layout (what open_clip's `load_checkpoint` and OpenAI's `build_model` read) as
 * safetensors bytes, with the config and, when known, the zero-shot prompts in the metadata.
 */
export async function serializeClip(model: CLIP): Promise<Uint8Array> {
  const metadata: Record<string, string> = { format: 'openai-clip', config: JSON.stringify(model.config) };
  if (model.prompts) metadata.zeroshot = JSON.stringify(model.prompts);
  return serializeSafetensors(model.stateDict(), metadata);
}
