// One CLIP training step, shared by the trainer, the step benchmark, the parity check and the tests:
// the symmetric contrastive loss (§2.5) and its gradients, optionally over micro-batches with cached features
// (open_clip's --accum-freq), then global-norm clipping, the AdamW update, and the logit scale clamped at
// ln 100 as the paper does after every step. Under mixed precision (trainStepAmp) the forward and backward
// run under autocast with a scaled loss, and a step whose gradients overflowed is skipped (nn/precision.ts).
import * as T from '../ops/index.ts';
import { clipGradNorm, type AdamW } from '../nn/optim.ts';
import { autocast, type GradScaler } from '../nn/precision.ts';
import { clipLoss, contrastiveLogits, l2normalize, type CLIP } from './model.ts';

/**
 * The contrastive loss of images [B, 3, n, n] and tokens [B, L], with its gradients accumulated into the
 * parameters' .grad. Returns the loss (the caller disposes it).
 *
 * With `microBatches` > 1 the batch is processed in that many slices with the memory of one (open_clip's
 * accum_freq): the features of every slice are first computed without gradients; then each slice is
 * recomputed with gradients and its features replace its cached rows in the full-batch loss, whose backward
 * accumulates into .grad, so the sum over slices is the full-batch gradient. The logit scale takes part with
 * gradients in the first pass only, so its gradient is counted once (open_clip's loop counts it every pass).
 * Batch-norm statistics are per slice.
 *
 * `lossScale` multiplies the loss before each backward pass (mixed precision's loss scaling): the gradients
 * come out that many times too large, the returned loss does not. Given as a scalar tensor it is the backward's
 * seed (no kernel; and a captured step takes it as an input, so it may change between replays).
 */
export function lossAndGradients(model: CLIP, images: T.Tensor, tokens: T.Tensor, microBatches = 1, lossScale: number | T.Tensor = 1): T.Tensor {
  const B = images.shape[0];
  if (!Number.isInteger(microBatches) || microBatches < 1 || B % microBatches !== 0) {
    throw new RangeError(`micro-batches: ${microBatches} must be a positive integer dividing the batch size ${B}`);
  }
  const backward = (loss: T.Tensor) =>
    T.tidy(() => (lossScale instanceof T.Tensor ? T.backward(loss, lossScale) : T.backward(lossScale === 1 ? loss : T.mul(loss, lossScale))));
  if (microBatches === 1) {
    const loss = T.tidy(() => {
      const out = model.forward(images, tokens);
      return clipLoss(out.logitsPerImage, out.logitsPerText);
    });
    backward(loss);
    return loss;
  }
  const m = B / microBatches;
  const slices = Array.from({ length: microBatches }, (_, k) => [T.narrow(images, 0, k * m, m), T.narrow(tokens, 0, k * m, m)] as const);
  const cachedImages = T.noGrad(() => slices.map(([img]) => T.keep(l2normalize(model.encodeImage(img)))));
  const cachedTexts = T.noGrad(() => slices.map(([, tok]) => T.keep(l2normalize(model.encodeText(tok)))));
  let loss: T.Tensor | null = null;
  for (const [j, [img, tok]] of slices.entries()) {
    loss?.dispose();
    loss = T.tidy(() => {
      const imageRows = cachedImages.map((f, k) => (k === j ? l2normalize(model.encodeImage(img)) : f));
      const textRows = cachedTexts.map((f, k) => (k === j ? l2normalize(model.encodeText(tok)) : f));
      const scale = j === 0 ? model.scale() : T.detach(model.scale());
      const logits = contrastiveLogits(T.concat(imageRows, 0), T.concat(textRows, 0), scale);
      const l = clipLoss(logits, T.transpose(logits));
      backward(l);
      return l;
    });
  }
  for (const t of [...cachedImages, ...cachedTexts, ...slices.flat()]) t.dispose();
  return loss as T.Tensor;
}

/**
 * Compiles, in parallel, the kernels of a training step's forward and backward on this batch shape before the
 * first step (T.precompile: nothing is computed, nothing changes), so the first step does not compile them one
 * by one. `amp` plans under autocast('f16'). Returns how many pipelines were compiled.
 */
export function precompileStep(model: CLIP, images: T.Tensor, tokens: T.Tensor, { microBatches = 1, amp = false } = {}): Promise<number> {
  return T.precompile(() => {
    const plan = () => lossAndGradients(model, images, tokens, microBatches).dispose();
    if (amp) autocast('f16', plan);
    else plan();
    for (const p of model.parameters()) {
      p.grad?.dispose();
      p.grad = null;
    }
  });
}

/** A training step's options: micro-batches (gradient accumulation with cached features) and global-norm clipping. */
export interface StepOptions {
  /** Micro-batches per step (open_clip's --accum-freq); 1 computes the batch at once. */
  microBatches?: number;
  /** Global gradient-norm clip; 0 (the default) leaves gradients as they are. */
  clipGrad?: number;
}

/**
 * One optimisation step on a batch: loss and gradients, optional clipping, the optimizer's update with its
 * current learning rate, zeroed gradients, and the logit scale clamped to [0, ln 100]. Returns the loss tensor
 * without reading it back (the caller decides when to wait for the GPU).
 */
export function trainStep(model: CLIP, optimizer: AdamW, images: T.Tensor, tokens: T.Tensor, { microBatches = 1, clipGrad = 0 }: StepOptions = {}): T.Tensor {
  const loss = lossAndGradients(model, images, tokens, microBatches);
  update(model, optimizer, clipGrad);
  return loss;
}

/**
 * trainStep in mixed precision (open_clip's --precision amp): forward and backward under autocast('f16') with
 * the loss multiplied by the scaler's scale; then the gradients are unscaled and, when all are finite, the update
 * runs as in trainStep; when not, the step is skipped and the scale lowered. Knowing which waits for the GPU (one
 * readback of a finiteness flag), as PyTorch's GradScaler does.
 */
export async function trainStepAmp(
  model: CLIP,
  optimizer: AdamW,
  scaler: GradScaler,
  images: T.Tensor,
  tokens: T.Tensor,
  { microBatches = 1, clipGrad = 0 }: StepOptions = {},
): Promise<{ loss: T.Tensor; skipped: boolean }> {
  const seed = scaler.seed();
  const loss = autocast('f16', () => lossAndGradients(model, images, tokens, microBatches, seed));
  seed.dispose();
  const finite = await scaler.unscale(model.parameters());
  if (finite) update(model, optimizer, clipGrad);
  return { loss, skipped: !finite };
}

/**
 * trainStepAmp with its two halves captured and replayed (core/capture.ts), for the trainer's default under
 * amp. The first half is the forward, backward and unscaling: the loss scale enters as the backward's seed (an
 * input of the captured step) and as the unscale kernels' divisor (a uniform read at each replay); it returns
 * the loss, the finiteness flag and the gradients. Then the flag is read back — the one wait per step, as in
 * trainStepAmp and PyTorch's GradScaler — and the second half, the update (clipping, AdamW, the logit-scale
 * clamp), is replayed only when the gradients are finite. Equal bit for bit to trainStepAmp, skipped steps
 * included (tested).
 */
export class CapturedAmpStep {
  private readonly gradients: T.CapturedStep<[T.Tensor, T.Tensor, T.Tensor], { loss: T.Tensor; flag: T.Tensor; grads: (T.Tensor | null)[] }>;
  private readonly update: T.CapturedStep<[], null>;

  constructor(
    private readonly model: CLIP,
    private readonly optimizer: AdamW,
    private readonly scaler: GradScaler,
    { microBatches = 1, clipGrad = 0 }: StepOptions = {},
  ) {
    this.gradients = new T.CapturedStep((images: T.Tensor, tokens: T.Tensor, seed: T.Tensor) => {
      const params = model.parameters();
      const loss = autocast('f16', () => lossAndGradients(model, images, tokens, microBatches, seed));
      const flag = scaler.unscaleGradients(params);
      return { loss, flag, grads: params.map((p) => p.grad) };
    }, 'amp train step (gradients)');
    // The gradients are zeroed outside: they are the first half's, not this half's to free.
    this.update = new T.CapturedStep(() => (applyUpdate(model, optimizer, clipGrad), null), 'amp train step (update)');
  }

  /** Why a half runs eagerly for good (null while both may be replayed). */
  get refusal(): string | null {
    return this.gradients.refusal ?? this.update.refusal;
  }

  /** Both halves' replays since they were last recorded. */
  get replays(): { gradients: number; update: number } {
    return { gradients: this.gradients.replays, update: this.update.replays };
  }

  /** Resolves once both halves replay in their cheapest form (CapturedStep.settled). */
  async settled(): Promise<void> {
    await Promise.all([this.gradients.settled(), this.update.settled()]);
  }

  /** One step, as trainStepAmp. */
  async run(images: T.Tensor, tokens: T.Tensor): Promise<{ loss: T.Tensor; skipped: boolean }> {
    const params = this.model.parameters();
    const seed = this.scaler.seed();
    const { loss, flag, grads } = this.gradients.run(images, tokens, seed);
    seed.dispose();
    // A replay returns views of the recorded gradients' storage: they become the parameters' gradients again.
    for (const [i, p] of params.entries()) {
      if (p.grad === grads[i]) continue;
      p.grad?.dispose();
      p.grad = grads[i];
    }
    const finite = (await flag.item()) === 0;
    flag.dispose();
    if (this.scaler.update(finite, params)) this.update.run();
    this.optimizer.zeroGrad();
    return { loss, skipped: !finite };
  }

  dispose(): void {
    this.gradients.dispose();
    this.update.dispose();
  }
}

/** Clipping, the optimizer's update, zeroed gradients, and the logit scale clamped to [0, ln 100]. */
function update(model: CLIP, optimizer: AdamW, clipGrad: number): void {
  applyUpdate(model, optimizer, clipGrad);
  optimizer.zeroGrad();
}

/** update() but for zeroing the gradients. */
function applyUpdate(model: CLIP, optimizer: AdamW, clipGrad: number): void {
  if (clipGrad > 0) clipGradNorm(model.parameters(), clipGrad).dispose();
  optimizer.step();
  T.noGrad(() => T.tidy(() => T.assign(model.logitScale, T.clamp(model.logitScale, 0, Math.log(100)))));
}
