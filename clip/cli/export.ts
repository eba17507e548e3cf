// `npm run export -- --run runs/scenes --to open_clip|hf --out DIR [--overwrite]`: a run trained here, written for
// open_clip or Hugging Face transformers (weights, config, tokenizer and a README with the commands to load it
// and to continue training there). The folder reads back with `npm run eval/zeroshot -- --weights DIR` and
// `npm run train -- --init-from DIR`.
import { parseArgs } from 'node:util';
import { exportRun, type ExportFormat } from '../io/interop.ts';
import { exitWithError } from './common.ts';

/** The command line, for --help and beside a flag error. */
export const USAGE = 'usage: clipgpu export --run runs/scenes --to open_clip|hf --out DIR [--overwrite]';
/** `clipgpu export [flags]`; `argv` holds the flags only. */
export async function main(argv: string[]): Promise<void> {
  let values: { run?: string; to?: string; out?: string; overwrite?: boolean };
  try {
    values = parseArgs({
      args: argv,
      options: {
        run: { type: 'string' },
        to: { type: 'string' },
        out: { type: 'string' },
        overwrite: { type: 'boolean' },
        debug: { type: 'boolean' },
      },
    }).values;
  } catch (e) {
    exitWithError('export', `${(e as Error).message}\n${USAGE}`, 2);
  }
  if (!values.run || !values.out) exitWithError('export', `--run and --out are required\n${USAGE}`, 2);
  if (values.to !== 'open_clip' && values.to !== 'hf') exitWithError('export', `--to must be open_clip or hf, got '${values.to ?? ''}'\n${USAGE}`, 2);
  try {
    const files = exportRun(values.run!, values.to as ExportFormat, values.out!, { overwrite: values.overwrite ?? false });
    console.log(`${values.out}: ${files.join(', ')}`);
    const how = values.to === 'open_clip' ? ' and continue training with open_clip' : ' in transformers';
    console.log(`see ${values.out}/README.md for the commands that load it${how}`);
  } catch (e) {
    exitWithError('export', e);
  }
}
