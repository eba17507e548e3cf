// Parity with OpenAI's reference outputs: build the model from a weights file alone, run an io file's images
// and tokens, and measure the worst relative error max|ours − ref| / max|ref| per group. In f16 (`precision`)
// the same comparison runs against the same f32 reference: openai/CLIP's own outputs.
import * as T from '../ops/index.ts';
import { GradScaler, autocast } from '../nn/precision.ts';
import type { SafetensorsFile } from '../nn/safetensors.ts';
import { lossAndGradients } from './step.ts';
import { clipFromSafetensors } from './weights.ts';

/**
 * fp32: everything in f32. f16: the weights converted to f16 (CLIP.half()) for the features and logits, and the
 * training step's loss and gradients in amp. amp: f32 weights, everything under autocast (the step's loss scaled).
 */
export type ParityPrecision = 'fp32' | 'f16' | 'amp';

export const TOLERANCE = { features: 1e-4, logits: 1e-4, loss: 1e-5, grads: 1e-3 };
/** In f16 (an f16 value carries 11 significant bits: 2⁻¹¹ ≈ 5e-4 relative per rounding, which layers compound). */
export const HALF_TOLERANCE = { features: 1e-2, logits: 1e-2, loss: 1e-2, grads: 5e-2 };

export interface ParityResult {
  features: number;
  logits: number;
  loss: number;
  grads: number;
  worst_grad: string;
  zero_grads?: string[];
}

function maxAbs(xs: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < xs.length; i++) m = Math.max(m, Math.abs(xs[i]));
  return m;
}

/** max|ours − ref| / max(max|ref|, floor). */
function relError(ours: ArrayLike<number>, ref: ArrayLike<number>, name: string, floor = 0): number {
  if (ours.length !== ref.length) throw new Error(`${name}: ${ours.length} values, reference has ${ref.length}`);
  // A NaN would make the error NaN (printed as null): say which side is not finite instead.
  if (!Array.prototype.every.call(ref, Number.isFinite)) throw new Error(`${name}: the reference holds NaN or Inf values`);
  if (!Array.prototype.every.call(ours, Number.isFinite)) throw new Error(`${name}: this model's values are not finite (NaN or Inf)`);
  let diff = 0;
  for (let i = 0; i < ref.length; i++) diff = Math.max(diff, Math.abs(ours[i] - ref[i]));
  return diff / (Math.max(maxAbs(ref), floor) || 1);
}

/**
 * Runs a weights file's model on an io file's inputs and compares: eval features and logits, the train-mode
 * loss, every parameter's gradient. Files are parsed safetensors; the paths name them in errors. `gradErrors`,
 * when given, receives each parameter's gradient error (the worst of which is `grads`).
 */
export async function parity(
  weights: SafetensorsFile,
  io: SafetensorsFile,
  weightsPath = 'weights',
  ioPath = 'io',
  precision: ParityPrecision = 'fp32',
  gradErrors?: Map<string, number>,
): Promise<ParityResult> {
  let model = clipFromSafetensors(weights, weightsPath);
  if (precision === 'f16') model.half();
  const amp = <R>(fn: () => R): R => (precision === 'fp32' ? fn() : autocast('f16', fn));
  const ref = (k: string) => {
    const t = io.tensors.get(k);
    if (!t) throw new Error(`${ioPath}: missing '${k}'`);
    return t;
  };
  const images = T.keep(T.Tensor.from(ref('images').data, ref('images').shape));
  const tokens = T.keep(T.Tensor.from(Int32Array.from(ref('tokens').data), ref('tokens').shape, 'i32'));
  try {
    model.eval();
    const evalOut = T.noGrad(() => amp(() => model.forward(images, tokens)));
    const features = Math.max(
      relError(await evalOut.imageFeatures.data(), ref('image_features').data, 'image_features'),
      relError(await evalOut.textFeatures.data(), ref('text_features').data, 'text_features'),
    );
    const logits = Math.max(
      relError(await evalOut.logitsPerImage.data(), ref('logits_per_image').data, 'logits_per_image'),
      relError(await evalOut.logitsPerText.data(), ref('logits_per_text').data, 'logits_per_text'),
    );
    for (const t of Object.values(evalOut)) t.dispose();

    // Train mode: batch-norm statistics from the batch, as the reference's training step.
    if (precision === 'f16') {
      // f16 weights take no gradient: the training step runs in amp on the f32 weights.
      model.dispose();
      model = clipFromSafetensors(weights, weightsPath);
    }
    model.train();
    const lossT =
      precision === 'fp32'
        ? lossAndGradients(model, images, tokens)
        : await scaledStep(model.parameters(), (scale) => amp(() => lossAndGradients(model, images, tokens, 1, scale)));
    const loss = relError([await lossT.item()], ref('train_loss').data, 'train_loss');
    lossT.dispose();
    // Some gradients are exactly zero in exact arithmetic (the key bias of attention pooling: softmax ignores a
    // shift shared by all keys), so the reference holds only rounding noise there. Errors are measured against at
    // least 1e-5 of the largest gradient in the model (float32 noise after accumulation); parameters whose whole
    // reference gradient is below that are listed as zero_grads.
    const named = model.namedParameters().map(([name, p]) => {
      const want = io.tensors.get(`grad.${name}`);
      if (!want) throw new Error(`${ioPath}: no reference gradient 'grad.${name}'`);
      return { name, p, want: want.data };
    });
    const floor = 1e-5 * Math.max(...named.map(({ want }) => maxAbs(want)));
    let grads = 0;
    let worstGrad = '';
    const zeroGrads: string[] = [];
    for (const { name, p, want } of named) {
      if (maxAbs(want) < floor) zeroGrads.push(name);
      const e = relError(p.grad ? await p.grad.data() : new Float32Array(want.length), want, name, floor);
      gradErrors?.set(name, e);
      if (e >= grads) [grads, worstGrad] = [e, name];
    }
    return { features, logits, loss, grads, worst_grad: worstGrad, ...(zeroGrads.length ? { zero_grads: zeroGrads } : {}) };
  } finally {
    images.dispose();
    tokens.dispose();
    model.dispose();
  }
}

/**
 * The loss and unscaled gradients of a mixed-precision step (`run(scale)`: the backward of the loss × scale),
 * the scale lowered until the gradients of `params` are finite, as training does when it skips a step.
 */
async function scaledStep(params: T.Tensor[], run: (scale: number) => T.Tensor): Promise<T.Tensor> {
  const scaler = new GradScaler();
  for (;;) {
    const loss = run(scaler.scale);
    if (await scaler.unscale(params)) return loss;
    loss.dispose();
    if (scaler.scale < 1) throw new Error('parity: the mixed-precision gradients are not finite even unscaled');
  }
}

export const withinTolerance = (r: ParityResult, precision: ParityPrecision = 'fp32'): boolean => {
  const tol = precision === 'fp32' ? TOLERANCE : HALF_TOLERANCE;
  return r.features <= tol.features && r.logits <= tol.logits && r.loss <= tol.loss && r.grads <= tol.grads;
};
