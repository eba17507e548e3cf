// `npm run zeroshot -- --weights W.safetensors --image a.png [--image b.jpg …] [--labels "cat,dog,…"]
//  [--templates run|ensemble|single] [--vocab V] [--json]`: class probabilities for each image, best first (with
//  --json: one JSON line with every probability at full precision).
// A model trained here carries the classes and prompt templates its evaluation used (in its metadata) and its
// own small vocabulary (vocab.txt.gz beside the weights): both are used unless told otherwise. Other weights
// get OpenAI's ImageNet prompt ensemble and CLIP's vocabulary.
import { parseArgs } from 'node:util';
import * as T from '../../ops/index.ts';
import { useTuning } from '../../kernels/io/tuning.ts';
import { defaultTemplates, textEncoderFor, zeroShotClassifier, zeroShotProbabilities } from '../evaluate.ts';
import { readImage } from '../io/images.ts';
import { l2normalize } from '../model.ts';
import { preprocess } from '../preprocess.ts';
import { ENSEMBLE_TEMPLATES, SINGLE_TEMPLATE } from '../prompts.ts';
import { HEAD_FLAGS, exitWithError, loadModel, runTool } from './common.ts';

/** The command line, for --help and beside a flag error. */
export const USAGE =
  'usage: clipgpu zeroshot --weights W.safetensors --image a.png [--image b.jpg] [--labels "cat,dog"] ' +
  '[--templates run|ensemble|single] [--vocab V] [--vision-head-width W] [--text-heads H] [--precision fp32|f16|auto] [--json]';
/** `clipgpu zeroshot [flags]`; `argv` holds the flags only. */
export async function main(argv: string[]): Promise<void> {
  let values: {
    weights?: string;
    image?: string[];
    labels?: string;
    templates?: string;
    vocab?: string;
    json?: boolean;
    'vision-head-width'?: string;
    'text-heads'?: string;
    precision?: string;
  };
  try {
    values = parseArgs({
      args: argv,
      options: {
        weights: { type: 'string' },
        image: { type: 'string', multiple: true },
        labels: { type: 'string' },
        templates: { type: 'string' },
        vocab: { type: 'string' },
        json: { type: 'boolean' },
        ...HEAD_FLAGS,
      },
    }).values;
  } catch (e) {
    exitWithError('zeroshot', `${(e as Error).message}\n${USAGE}`, 2);
  }
  const usage = (message: string): never => exitWithError('zeroshot', `${message}\n${USAGE}`, 2);
  if (!values.weights || !values.image?.length) usage('--weights and at least one --image are required');
  if (values.templates !== undefined && !['run', 'ensemble', 'single'].includes(values.templates)) {
    usage(`--templates must be run, ensemble or single, got '${values.templates}'`);
  }
  await runTool('zeroshot', async () => {
    await T.init();
    await useTuning((line) => console.error(line));
    const { model, tokenizer } = loadModel('zeroshot', values.weights!, values);
    model.eval();
    if (values.templates === 'run' && !model.prompts) usage(`--templates run: ${values.weights} records no prompts (only models trained here do)`);
    const labels = values.labels
      ? values.labels
          .split(',')
          .map((l) => l.trim())
          .filter(Boolean)
      : (model.prompts?.classes ?? usage(`--labels is required: ${values.weights} records no classes`));
    const templates = values.templates === 'ensemble' ? ENSEMBLE_TEMPLATES : values.templates === 'single' ? SINGLE_TEMPLATE : defaultTemplates(model);
    const recorded = model.prompts && templates === model.prompts.templates ? ' (recorded with the model)' : '';
    console.error(`prompts: ${templates.map((t) => `"${t}"`).join(', ')}${recorded}`);
    const n = model.config.imageResolution;
    const pixels = values.image!.map((path) => preprocess(readImage(path), n));
    const batch = new Float32Array(pixels.length * 3 * n * n);
    pixels.forEach((p, i) => batch.set(p, i * p.length));
    const classifier = zeroShotClassifier(textEncoderFor(model, tokenizer), labels, templates);
    const features = T.noGrad(() => T.tidy(() => l2normalize(model.encodeImage(T.Tensor.from(batch, [pixels.length, 3, n, n])))));
    const probs = await zeroShotProbabilities(features, classifier).data();
    if (values.json) {
      const images = values.image!.map((path, i) => ({ path, probabilities: Array.from(probs.subarray(i * labels.length, (i + 1) * labels.length)) }));
      console.log(JSON.stringify({ labels, templates, images }));
      return;
    }
    values.image!.forEach((path, i) => {
      const row = labels.map((label, j) => [label, probs[i * labels.length + j]] as const).sort((a, b) => b[1] - a[1]);
      console.log(path);
      for (const [label, p] of row.slice(0, 10)) console.log(`  ${(100 * p).toFixed(2).padStart(6)}%  ${label}`);
      if (row.length > 10) console.log(`  … ${row.length - 10} more classes`);
    });
  });
}
