// CLIP parity with openai/CLIP in the browser: the fixtures fetched from the test server, the same check and
// tolerances as `npm run parity` and test/clip.test.ts in Node.
import * as assert from 'uvu/assert';
import { parity, withinTolerance } from '../../clip/parity.ts';
import { parseSafetensors } from '../../nn/safetensors.ts';
import { suite } from '../harness.ts';

const test = suite('parity (browser)');

async function fixture(name: string) {
  const response = await fetch(`/test/fixtures/${name}`);
  if (!response.ok) throw new Error(`/test/fixtures/${name}: HTTP ${response.status}`);
  return parseSafetensors(new Uint8Array(await response.arrayBuffer()), name);
}

for (const name of ['vit_tiny', 'rn_tiny']) {
  test(`${name}: features, logits, loss and every gradient match openai/CLIP`, async () => {
    const result = await parity(await fixture(`${name}.safetensors`), await fixture(`${name}.io.safetensors`), name, `${name}.io`);
    console.log(`parity ${name}: ${JSON.stringify(result)}`);
    assert.ok(withinTolerance(result), JSON.stringify(result));
  });
}

test.run();
