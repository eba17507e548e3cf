// The consumer test's strict TypeScript user: type-checked (not run) against the installed package's
// declarations, with the library's own declarations checked too (skipLibCheck off). Each @ts-expect-error
// fails the check if the types it guards went loose (`any`) or a private path became reachable.
import * as T from 'clipgpu';
import { AdamW, Linear, Module, init, type StateDict } from 'clipgpu/nn';
import { CLIP, CONFIGS, Tokenizer, preprocess, type ClipConfig, type RgbImage } from 'clipgpu/clip';
import { time, validate, type TimeOptions } from 'clipgpu/bench';
import { loadClip, readTokenizer, train, type TrainOptions } from 'clipgpu/node';

export async function use(image: RgbImage): Promise<number> {
  await T.init();
  const x: T.Tensor = T.randNormal([4, 8]);
  const dtype: T.DType = x.dtype;
  const layer = new Linear(8, 2);
  init.zeros(layer.bias!);
  const optimizer = new AdamW(layer.parameters(), { lr: 1e-3 });
  const loss = T.tidy(() => T.mean(layer.forward(x)));
  T.backward(loss);
  optimizer.step();
  const state: StateDict = layer.stateDict();
  const config: ClipConfig = CONFIGS['ViT-tiny']!;
  const model: Module = new CLIP(config);
  const tokenizer: Tokenizer = readTokenizer();
  const pixels: Float32Array = preprocess(image, config.imageResolution);
  const options: TimeOptions = { reps: 3 };
  const { ms, gpuMs } = await time(() => T.relu(x), options);
  validate('relu', [{ got: 1, want: 1 }], 1e-6);
  const settings: Pick<TrainOptions, 'steps' | 'batchSize'> = { steps: 3, batchSize: 8 };
  const loaded: CLIP = loadClip('model.safetensors');
  void train;
  // @ts-expect-error a shape holds numbers
  T.zeros(['4']);
  // @ts-expect-error an unknown dtype
  T.zeros([4], 'f64');
  const sizes = [state.size, pixels.length, tokenizer.tokenize('a cat').length, settings.steps, dtype.length];
  sizes.push(loaded.config.embedDim, model.parameters().length);
  return ms + (gpuMs ?? 0) + sizes.reduce((a, b) => a + b);
}

/** A custom op's inputs and uniforms are typed by its spec. */
export function custom(x: T.Tensor): T.Tensor {
  const scale = T.customOp({ name: 'scale', inputs: ['x'], uniforms: { s: 'f32' }, body: 'store(i, u.s * load_x(i));' });
  // @ts-expect-error an input the op does not declare
  scale({ y: x }, { s: 2 });
  return scale({ x }, { s: 2 });
}

// @ts-expect-error modules outside `exports` are not reachable
export type Private = typeof import('clipgpu/dist/ops/tape.js');
