// The consumer test's Node program: `node node.mjs RUN` (a folder `clipgpu train` wrote) prints one JSON line.
import * as T from 'clipgpu';
import { join } from 'node:path';
import { loadClip, tokenizerFor } from 'clipgpu/node';
import { customKernel, trainMlp, zeroShot } from './use.mjs';

await T.init();
const mlp = await trainMlp();
const weights = join(process.argv[2], 'model.safetensors');
const model = loadClip(weights);
const probabilities = await zeroShot(model, tokenizerFor(weights, model.config.vocabSize), ['red circle', 'blue square', 'green cross']);
console.log(JSON.stringify({ mlp, probabilities, custom: await customKernel() }));
T.closeGpu();
