// What the command-line tools share: errors a user can cause as one line naming what was wrong (the stack
// trace only with --debug or CLIPGPU_DEBUG=1), and the flags that complete a weights file's config.
import * as T from '../../ops/index.ts';
import type { CLIP } from '../model.ts';
import { isExportFolder, loadExport } from '../io/interop.ts';
import { loadClip, tokenizerFor } from '../io/weights.ts';
import type { Tokenizer } from '../tokenizer.ts';

const debug = process.argv.includes('--debug') || process.env.CLIPGPU_DEBUG === '1';

/** Past this many characters an error's line is cut (its start names the file or flag; --debug shows it whole). */
const MAX_ERROR_CHARS = 600;

/** Prints `error` as `tool: message` (its stack under --debug) and exits with `code`. */
export function exitWithError(tool: string, error: unknown, code = 1): never {
  const message = error instanceof Error ? error.message : String(error);
  const short =
    message.length > MAX_ERROR_CHARS
      ? `${message.slice(0, MAX_ERROR_CHARS)}… (${message.length - MAX_ERROR_CHARS} more characters: --debug shows them)`
      : message;
  console.error(debug && error instanceof Error ? error.stack : `${tool}: ${short}`);
  process.exit(code);
}

/** Runs a tool's body: any error ends it with one line and exit code 1; the GPU is closed either way. */
export async function runTool(tool: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (e) {
    exitWithError(tool, e);
  } finally {
    T.closeGpu();
  }
}

/** Flags that say what a weights file's metadata may not (the attention heads), and the precision to run in. */
export const HEAD_FLAGS = {
  'vision-head-width': { type: 'string' },
  'text-heads': { type: 'string' },
  precision: { type: 'string', default: 'fp32' },
  debug: { type: 'boolean' },
} as const;

/**
 * The weights' precision for --precision: fp32, f16 (CLIP.half(): f16 weights, f16 compute; refused on a device
 * without shader-f16, naming it), or auto (f16 where the device has shader-f16, else fp32, saying so).
 */
export function inferencePrecision(tool: string, flag: string | undefined): 'fp32' | 'f16' {
  const value = flag ?? 'fp32';
  if (value !== 'fp32' && value !== 'f16' && value !== 'auto') throw new RangeError(`--precision must be fp32, f16 or auto, got '${value}'`);
  const hasF16 = T.gpu().hasFeature('shader-f16');
  if (value === 'f16' && !hasF16) {
    throw new RangeError(
      `--precision f16 needs the WebGPU feature 'shader-f16', which this device (${T.gpu().name}) lacks: ` +
        'use --precision fp32 (or auto)',
    );
  }
  if (value === 'auto' && !hasF16) console.error(`${tool}: note: this device lacks 'shader-f16'; running in fp32`);
  return value === 'fp32' || !hasF16 ? 'fp32' : 'f16';
}

/**
 * The model at `path`, in the precision --precision asks for — a weights file (loadClip with the head flags,
 * telling the user on stderr when the heads had to be assumed) or an open_clip / Hugging Face export folder
 * (config, weights and tokenizer) — and its tokenizer: `vocab` when given, else the folder's, else the one beside
 * the weights file, else CLIP's.
 */
export function loadModel(
  tool: string,
  path: string,
  values: { 'vision-head-width'?: string; 'text-heads'?: string; vocab?: string; precision?: string },
): { model: CLIP; tokenizer: Tokenizer } {
  const precision = inferencePrecision(tool, values.precision);
  const loaded = loadWeights(tool, path, values);
  if (precision === 'f16') loaded.model.half();
  return loaded;
}

function loadWeights(
  tool: string,
  path: string,
  values: { 'vision-head-width'?: string; 'text-heads'?: string; vocab?: string },
): { model: CLIP; tokenizer: Tokenizer } {
  if (isExportFolder(path)) {
    const loaded = loadExport(path);
    return values.vocab ? { model: loaded.model, tokenizer: tokenizerFor(path, loaded.model.config.vocabSize, values.vocab) } : loaded;
  }
  const positive = (flag: string, text: string | undefined) => {
    if (text === undefined) return undefined;
    const v = Number(text);
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`--${flag} must be a positive integer, got '${text}'`);
    return v;
  };
  const model = loadClip(path, {
    visionHeadWidth: positive('vision-head-width', values['vision-head-width']),
    transformerHeads: positive('text-heads', values['text-heads']),
    note: (line) => console.error(`${tool}: note: ${line.replace('pass the vision head width / text head count', 'pass --vision-head-width / --text-heads')}`),
  });
  try {
    return { model, tokenizer: tokenizerFor(path, model.config.vocabSize, values.vocab) };
  } catch (e) {
    model.dispose();
    throw e;
  }
}
