// Export folders on disk (Node-only): a run written for open_clip or Hugging Face transformers, with the
// tokenizer and a README of the exact commands, and such folders (ours or made by those tools in the same
// form) read back as a model and its tokenizer.
import { existsSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { FileError, makeDirectory, readBytes, writeFileAtomic } from '../../core/io/files.ts';
import { readSafetensors } from '../../nn/io/safetensors.ts';
import { serializeSafetensorsHost } from '../../nn/safetensors.ts';
import { ConfigError, type ClipConfig } from '../config.ts';
import { configFromHf, configFromOpenClip, hfConfig, hfTokenizerFiles, mergesFromHf, openClipConfig, openClipPreprocess, toHfLayout } from '../interop.ts';
import type { CLIP } from '../model.ts';
import { CLIP_MEAN, CLIP_STD } from '../preprocess.ts';
import { OPENAI_VOCAB_SIZE, Tokenizer, bpeBytes } from '../tokenizer.ts';
import { clipFromTensors, configOf, toOpenAiLayout } from '../weights.ts';
import { readTokenizer } from './vocab.ts';
import { tokenizerFor } from './weights.ts';

/** Where an export goes: open_clip (OpenAI's layout, open_clip's config) or Hugging Face transformers (CLIPModel). */
export type ExportFormat = 'open_clip' | 'hf';

const OPEN_CLIP_WEIGHTS = 'open_clip_model.safetensors';
const OPEN_CLIP_CONFIG = 'open_clip_config.json';
const OPEN_CLIP_VOCAB = 'bpe_vocab.txt.gz';
/** Every file an export of either format writes (open_clip's `clipgpu-<run>.json` is matched by its pattern). */
const EXPORT_FILES = new Set([
  OPEN_CLIP_WEIGHTS,
  OPEN_CLIP_CONFIG,
  OPEN_CLIP_VOCAB,
  'README.md',
  'model.safetensors',
  'config.json',
  'preprocessor_config.json',
  'vocab.json',
  'merges.txt',
  'special_tokens_map.json',
  'tokenizer_config.json',
]);
const isExportFile = (name: string) => EXPORT_FILES.has(name) || /^clipgpu-[\w.-]*\.json$/.test(name);

/** The fields of two configs that differ (heads excluded: weights cannot tell them). */
function differences(a: ClipConfig, b: ClipConfig): string[] {
  const keys: (keyof ClipConfig)[] = [
    'embedDim',
    'imageResolution',
    'visionLayers',
    'visionWidth',
    'visionPatchSize',
    'contextLength',
    'vocabSize',
    'transformerWidth',
    'transformerLayers',
  ];
  return keys.filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])).map((k) => `${k} ${JSON.stringify(a[k])} vs ${JSON.stringify(b[k])} in the weights`);
}

/**
 * Writes the run in `runDir` (model.safetensors, and vocab.txt.gz when it has its own vocabulary) to `outDir` in
 * open_clip's or transformers' form. `outDir` must not exist or be empty unless `overwrite`, which replaces a
 * previous export there (of either format: its files that this one does not write are removed, so the folder
 * never holds two models); a training run's folder is never an export's. Returns the files.
 */
export function exportRun(runDir: string, to: ExportFormat, outDir: string, { overwrite = false } = {}): string[] {
  const weightsPath = join(runDir, 'model.safetensors');
  if (!existsSync(weightsPath)) throw new FileError(`--run ${runDir}: no model.safetensors there (train one with \`npm run train\`)`);
  const present = existsSync(outDir) ? readdirSync(outDir).sort() : [];
  const run = present.filter((f) => f === 'checkpoint.safetensors' || f === 'metrics.jsonl');
  if (run.length) throw new FileError(`--out ${outDir} holds a training run (${run.join(', ')}): export to another folder`);
  if (present.length > 0 && !overwrite) throw new FileError(`--out ${outDir} exists and is not empty: choose another folder or pass --overwrite`);
  const file = readSafetensors(weightsPath);
  const config = configOf(file, weightsPath);
  const tokenizer = tokenizerFor(weightsPath, config.vocabSize);
  if (tokenizer.vocabSize !== config.vocabSize) {
    throw new ConfigError(
      `${runDir}/vocab.txt.gz has ${tokenizer.vocabSize} tokens but ${weightsPath} embeds ${config.vocabSize}: ` +
        'they are not from the same run',
    );
  }
  const tensors = toOpenAiLayout(file);
  const name = `clipgpu-${basename(runDir.replace(/\/+$/, '')) || 'run'}`.replace(/[^\w.-]/g, '_');
  const logitScale = tensors.get('logit_scale')!.data[0];
  const files: Record<string, Uint8Array | string> = {};
  const ownVocab = config.vocabSize !== OPENAI_VOCAB_SIZE;
  const prompts = file.metadata.zeroshot;
  if (to === 'open_clip') {
    files[OPEN_CLIP_WEIGHTS] = serializeSafetensorsHost(tensors, { format: 'pt' });
    files[`${name}.json`] = JSON.stringify(openClipConfig(config), null, 2);
    files[OPEN_CLIP_CONFIG] = JSON.stringify(
      {
        model_cfg: openClipConfig(config),
        preprocess_cfg: openClipPreprocess(config),
        ...(prompts ? { zeroshot: JSON.parse(prompts) } : {}),
      },
      null,
      2,
    );
    if (ownVocab) files[OPEN_CLIP_VOCAB] = bpeBytes(tokenizer.merges);
    files['README.md'] = openClipReadme(name, config, ownVocab, logitScale);
  } else {
    files['model.safetensors'] = serializeSafetensorsHost(toHfLayout(tensors, config), { format: 'pt' });
    files['config.json'] = JSON.stringify(
      { ...hfConfig(config, tokenizer, logitScale), ...(prompts ? { clipgpu_zeroshot: JSON.parse(prompts) } : {}) },
      null,
      2,
    );
    files['preprocessor_config.json'] = JSON.stringify(
      {
        image_processor_type: 'CLIPImageProcessor',
        do_resize: true,
        size: { shortest_edge: config.imageResolution },
        resample: 3,
        do_center_crop: true,
        crop_size: { height: config.imageResolution, width: config.imageResolution },
        do_rescale: true,
        rescale_factor: 1 / 255,
        do_normalize: true,
        image_mean: [...CLIP_MEAN],
        image_std: [...CLIP_STD],
        do_convert_rgb: true,
      },
      null,
      2,
    );
    Object.assign(files, hfTokenizerFiles(tokenizer, config.contextLength));
    files['README.md'] = hfReadme(config);
  }
  makeDirectory(outDir);
  for (const [f, content] of Object.entries(files)) writeFileAtomic(join(outDir, f), typeof content === 'string' ? new TextEncoder().encode(content) : content);
  for (const f of present) if (isExportFile(f) && !(f in files)) unlinkSync(join(outDir, f));
  return Object.keys(files);
}

/** Whether `path` is an export folder this module can read. */
export function isExportFolder(path: string): boolean {
  return existsSync(path) && statSync(path).isDirectory() && (existsSync(join(path, OPEN_CLIP_CONFIG)) || existsSync(join(path, 'config.json')));
}

/**
 * Reads an export folder (ours, or one in the same form from open_clip / transformers): the config from its
 * JSON (heads included), checked against the weights' shapes; the tokenizer from its files, checked against
 * the embedding. Errors name the file and the mismatch.
 */
export function loadExport(dir: string): { model: CLIP; tokenizer: Tokenizer } {
  const json = (f: string) => {
    try {
      return JSON.parse(new TextDecoder().decode(readBytes(join(dir, f), ConfigError)));
    } catch (e) {
      throw e instanceof ConfigError ? e : new ConfigError(`${join(dir, f)}: not valid JSON (${(e as Error).message})`);
    }
  };
  let config: ClipConfig;
  let weightsPath: string;
  let tokenizer: Tokenizer;
  let prompts: unknown;
  if (existsSync(join(dir, OPEN_CLIP_CONFIG))) {
    const meta = json(OPEN_CLIP_CONFIG) as { model_cfg?: unknown; zeroshot?: unknown };
    config = configFromOpenClip(meta.model_cfg, join(dir, OPEN_CLIP_CONFIG));
    weightsPath = join(dir, OPEN_CLIP_WEIGHTS);
    tokenizer = existsSync(join(dir, OPEN_CLIP_VOCAB)) ? readTokenizer(join(dir, OPEN_CLIP_VOCAB), config.vocabSize) : readTokenizer();
    prompts = meta.zeroshot;
  } else {
    const meta = json('config.json') as { clipgpu_zeroshot?: unknown };
    config = configFromHf(meta, join(dir, 'config.json'));
    weightsPath = join(dir, 'model.safetensors');
    const merges = mergesFromHf(new TextDecoder().decode(readBytes(join(dir, 'merges.txt'), ConfigError)), json('vocab.json'), dir);
    tokenizer = new Tokenizer(merges);
    prompts = meta.clipgpu_zeroshot;
  }
  const file = readSafetensors(weightsPath);
  const mismatch = differences(config, configOf(file, weightsPath));
  if (mismatch.length) throw new ConfigError(`${dir}: the config disagrees with ${basename(weightsPath)}: ${mismatch.join('; ')}`);
  if (tokenizer.vocabSize !== config.vocabSize) {
    throw new ConfigError(`${dir}: the tokenizer has ${tokenizer.vocabSize} tokens but the model embeds ${config.vocabSize}`);
  }
  const model = clipFromTensors(toOpenAiLayout(file), config, weightsPath);
  const p = prompts as { templates?: unknown; classes?: unknown } | undefined;
  if (p && Array.isArray(p.templates) && Array.isArray(p.classes)) model.prompts = { templates: p.templates.map(String), classes: p.classes.map(String) };
  return { model, tokenizer };
}

function openClipReadme(name: string, c: ClipConfig, ownVocab: boolean, logitScale: number): string {
  const tokenizerLines = ownVocab
    ? `tokenizer = open_clip.tokenizer.SimpleTokenizer(bpe_path='${OPEN_CLIP_VOCAB}', context_length=${c.contextLength})`
    : `tokenizer = open_clip.get_tokenizer('${name}')`;
  const vocabLine = ownVocab
    ? `- \`${OPEN_CLIP_VOCAB}\`: the run's own ${c.vocabSize}-token BPE vocabulary (CLIP's format).\n`
    : "- the tokenizer is CLIP's own (open_clip's default).\n";
  return `# ${name} for open_clip

Exported by clipgpu (\`npm run export -- --to open_clip\`). Files:

- \`${OPEN_CLIP_WEIGHTS}\`: the weights, in open_clip's (= OpenAI's) key layout;
- \`${name}.json\`: the model config (\`embed_dim\`, \`vision_cfg\` with \`head_width\` ${c.visionHeadWidth ?? 64}, \`text_cfg\`,
  \`quick_gelu\`); the preprocessing is open_clip's default, OpenAI's mean/std and bicubic resize to ${c.imageResolution} px;
- \`${OPEN_CLIP_CONFIG}\`: the config and preprocessing in the form open_clip's Hugging Face hub loader reads
  (upload this folder to the hub and \`create_model_and_transforms('hf-hub:you/${name}')\` works);
${vocabLine}
## Load it

\`\`\`python
import open_clip, torch
open_clip.add_model_config('${name}.json')
model, _, preprocess = open_clip.create_model_and_transforms('${name}', pretrained='${OPEN_CLIP_WEIGHTS}')
${tokenizerLines}
model.eval()
with torch.no_grad():
    text = model.encode_text(tokenizer(['a red circle', 'a blue square']))
\`\`\`

## Continue training on a cluster

\`\`\`sh
torchrun --nproc_per_node 8 -m open_clip_train.main \\
  --model ${name} --pretrained ${OPEN_CLIP_WEIGHTS} \\
  --train-data '/data/shards/{00000..09999}.tar' --dataset-type webdataset --train-num-samples 10000000 \\
  --batch-size 256 --lr 5e-4 --wd 0.1 --warmup 2000 --epochs 10 --beta2 0.98 --eps 1e-6 --precision amp
\`\`\`

The settings that match how it was trained here: AdamW with β2 = 0.98 and ε = 1e-6, weight decay 0.1 on weight
matrices only (open_clip's default exclusions are the same: gains, biases, embeddings, logit scale), a cosine
schedule with linear warmup, the logit scale clamped at ln 100 (open_clip clamps it the same way; it is
${logitScale.toFixed(3)} now, a temperature of ${(1 / Math.exp(logitScale)).toFixed(4)}). Pick the learning rate for the new batch size
(here: 2e-3 at batch 64; fine-tuning usually wants less). What does not carry over: the optimizer state and the
position in the data (open_clip starts both afresh).${ownVocab ? `

The run has its own vocabulary: open_clip's training script tokenizes with \`open_clip.get_tokenizer(model_name)\`,
which is CLIP's vocabulary unless told otherwise. Before training, make it this one, e.g. in your launcher:

\`\`\`python
import open_clip
_custom = open_clip.tokenizer.SimpleTokenizer(bpe_path='${OPEN_CLIP_VOCAB}', context_length=${c.contextLength})
open_clip.get_tokenizer = lambda *a, **k: _custom
\`\`\`` : ''}

## Come back

\`npm run eval -- --weights <this folder>\` and \`npm run zeroshot -- --weights <this folder>\` read this folder as it
is; \`npm run train -- --init-from <this folder>\` fine-tunes from it.
`;
}

function hfReadme(c: ClipConfig): string {
  return `# A clipgpu CLIP in Hugging Face transformers' layout

Exported by clipgpu (\`npm run export -- --to hf\`): \`config.json\` (CLIPConfig, quick_gelu, ${c.visionLayers} × ${c.visionWidth} vision,
${c.transformerLayers} × ${c.transformerWidth} text), \`model.safetensors\` (CLIPModel keys, q/k/v projections split), the
CLIPTokenizer files (\`vocab.json\`, \`merges.txt\`, ${c.vocabSize} tokens) and \`preprocessor_config.json\`
(bicubic resize to ${c.imageResolution}, centre crop, OpenAI's mean and std).

\`\`\`python
from transformers import CLIPModel, CLIPProcessor
model = CLIPModel.from_pretrained('.')
processor = CLIPProcessor.from_pretrained('.')
inputs = processor(text=['a red circle', 'a blue square'], images=image, return_tensors='pt', padding=True)
probs = model(**inputs).logits_per_image.softmax(dim=-1)
\`\`\`

transformers.js reaches it through its ONNX conversion (\`optimum-cli export onnx --model . onnx/\`).
\`npm run eval -- --weights <this folder>\` and \`npm run zeroshot -- --weights <this folder>\` read it back here.
`;
}

