// The consumer test's page, bundled by esbuild from the installed package: the same program in a tab, the
// weights and CLIP's vocabulary fetched as bytes. The result goes to window.__result.
import * as T from 'clipgpu';
import { parseSafetensors } from 'clipgpu/nn';
import { Tokenizer, clipFromSafetensors } from 'clipgpu/clip';
import { customKernel, trainMlp, zeroShot } from './use.mjs';

const bytes = async (url) => new Uint8Array(await (await fetch(url)).arrayBuffer());
try {
  await T.init();
  const mlp = await trainMlp();
  const model = clipFromSafetensors(parseSafetensors(await bytes('/run/model.safetensors'), 'model.safetensors'), 'model.safetensors');
  const tokenizer = Tokenizer.fromBytes(await bytes('/run/vocab.txt.gz'), model.config.vocabSize, 'vocab.txt.gz');
  const probabilities = await zeroShot(model, tokenizer, ['red circle', 'blue square', 'green cross']);
  window.__result = { mlp, probabilities, custom: await customKernel() };
} catch (e) {
  window.__result = { error: String(e?.stack ?? e) };
}
