// `npm run eval -- --weights runs/scenes/model.safetensors [--dataset scenes|mnist|fashion-mnist|mnist-scenes|fashion-scenes]
// [--vocab V] [--seed 0] [--precision fp32|f16|auto]`:
// zero-shot top-1 on the dataset's evaluation sets, retrieval recall on validation pairs, and a linear probe on
// frozen image features.
import { parseArgs } from 'node:util';
import * as T from '../../ops/index.ts';
import { useTuning } from '../../kernels/io/tuning.ts';
import { evaluateClip, linearProbe, probeFeatures } from '../evaluate.ts';
import { builtinSource, type LabelledImages } from '../data/index.ts';
import { HEAD_FLAGS, exitWithError, loadModel, runTool } from './common.ts';

/** The command line, for --help and beside a flag error. */
export const USAGE =
  'usage: clipgpu eval --weights runs/scenes/model.safetensors ' +
  '[--dataset scenes|mnist|fashion-mnist|mnist-scenes|fashion-scenes] [--vocab runs/scenes/vocab.txt.gz] [--seed 0] ' +
  '[--vision-head-width W] [--text-heads H] [--precision fp32|f16|auto]';
/** `clipgpu eval [flags]`; `argv` holds the flags only. */
export async function main(argv: string[]): Promise<void> {
  let values: { weights?: string; vocab?: string; dataset?: string; seed?: string; 'vision-head-width'?: string; 'text-heads'?: string; precision?: string };
  try {
    values = parseArgs({
      args: argv,
      options: {
        weights: { type: 'string' },
        vocab: { type: 'string' },
        dataset: { type: 'string', default: 'scenes' },
        seed: { type: 'string', default: '0' },
        ...HEAD_FLAGS,
      },
    }).values;
  } catch (e) {
    exitWithError('eval', `${(e as Error).message}\n${USAGE}`, 2);
  }
  if (!values.weights) exitWithError('eval', `--weights is required\n${USAGE}`, 2);
  await runTool('eval', async () => {
    await T.init();
    await useTuning((line) => console.error(line));
    const { model, tokenizer } = loadModel('eval', values.weights!, values);
    const data = builtinSource(values.dataset!, Number(values.seed));
    const n = model.config.imageResolution;

    const result = await evaluateClip(model, tokenizer, data);
    for (const [name, top1] of Object.entries(result.zeroShot)) {
      console.log(`zero-shot top-1, ${name.padEnd(24)}${(100 * top1).toFixed(1)}%  (${data.zeroShot!.classes.length} classes)`);
    }
    const r = result.retrieval!; // built-in datasets always have validation pairs
    console.log(`retrieval image → text R@1 / R@5        ${r.imageToTextR1.toFixed(2)} / ${r.imageToTextR5.toFixed(2)}`);
    console.log(`retrieval text → image R@1 / R@5        ${r.textToImageR1.toFixed(2)} / ${r.textToImageR5.toFixed(2)}`);
    const probeSets = data.zeroShot?.probe?.(n);
    if (probeSets) {
      model.eval();
      const split = (s: LabelledImages) => ({
        features: T.keep(probeFeatures(model, s.pixels, s.labels.length)),
        labels: T.keep(T.Tensor.from(Int32Array.from(s.labels))),
      });
      const probe = await linearProbe(split(probeSets.train), split(probeSets.validation), split(probeSets.test), data.zeroShot!.classes.length);
      console.log(
        `linear probe top-1 (λ = ${probe.lambda})`.padEnd(41) +
          `${(100 * probe.testAccuracy).toFixed(1)}%  (validation ${(100 * probe.validationAccuracy).toFixed(1)}%)`,
      );
    }
  });
}
