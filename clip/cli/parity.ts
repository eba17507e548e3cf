// `npm run -s parity -- <weights.safetensors> <io.safetensors>`: one JSON line with the worst errors
// ({"features", "logits", "loss", "grads", "worst_grad"}); exits 1 when a tolerance is exceeded.
import * as T from '../../ops/index.ts';
import { readSafetensors } from '../../nn/io/safetensors.ts';
import { parity, withinTolerance } from '../parity.ts';
import { runTool } from './common.ts';

const [weightsPath, ioPath] = process.argv.slice(2);
if (!weightsPath || !ioPath) {
  console.error('usage: npm run -s parity -- <weights.safetensors> <io.safetensors>');
  process.exit(2);
}
let ok = false;
await runTool('parity', async () => {
  await T.init();
  const result = await parity(readSafetensors(weightsPath), readSafetensors(ioPath), weightsPath, ioPath);
  console.log(JSON.stringify(result));
  ok = withinTolerance(result);
});
process.exit(ok ? 0 : 1);
