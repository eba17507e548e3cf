// `npm run -s parity -- [--precision fp32|f16|amp] <weights.safetensors> <io.safetensors>`: one JSON line with
// the worst errors ({"features", "logits", "loss", "grads", "worst_grad"}); exits 1 when a tolerance (f32's, or
// f16's for the others: clip/parity.ts) is exceeded.
import * as T from '../../ops/index.ts';
import { readSafetensors } from '../../nn/io/safetensors.ts';
import { parity, withinTolerance, type ParityPrecision } from '../parity.ts';
import { runTool } from './common.ts';

/** The command line, for --help and beside a usage error. */
export const USAGE = 'usage: clipgpu parity [--precision fp32|f16|amp] <weights.safetensors> <io.safetensors>';
/** `clipgpu parity [--precision P] WEIGHTS IO`; `argv` holds the arguments only. */
export async function main(argv: string[]): Promise<void> {
  const args = [...argv];
  let precision: ParityPrecision = 'fp32';
  const at = args.indexOf('--precision');
  if (at >= 0) {
    const value = args[at + 1];
    if (value !== 'fp32' && value !== 'f16' && value !== 'amp') {
      console.error(`parity: --precision must be fp32, f16 or amp, got ${value === undefined ? 'nothing' : `'${value}'`}\n${USAGE}`);
      process.exit(2);
    }
    precision = value;
    args.splice(at, 2);
  }
  const [weightsPath, ioPath] = args;
  if (!weightsPath || !ioPath || args.length > 2) {
    console.error(USAGE);
    process.exit(2);
  }
  let ok = false;
  await runTool('parity', async () => {
    await T.init();
    const result = await parity(readSafetensors(weightsPath), readSafetensors(ioPath), weightsPath, ioPath, precision);
    console.log(JSON.stringify(result));
    ok = withinTolerance(result, precision);
  });
  process.exit(ok ? 0 : 1);
}
