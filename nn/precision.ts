// Mixed precision: open_clip's `--precision amp` (PyTorch's autocast + GradScaler), written as an explicit
// policy the layers follow rather than a rule hidden in every op.
//
// autocast('f16', fn): inside fn the layers that multiply — Linear, Conv2d, attention and its projections, CLIP's
// output projections — cast their inputs to f16 and return f16. Their f32 master weights are read as they are by
// mixed-dtype matmuls (f16 activations × f32 weights, f32 accumulation, the result rounded to f16 once): no f16
// copy of a weight is made, nor kept for the backward, and the weights' gradients come out in f32 directly (the
// input casts are differentiable too). The optimizer state stays f32.
// Everything else keeps the dtype of its input: a residual stream that starts in f32 stays f32 (f16 branch
// outputs are cast up where they are added), layer norm and batch norm compute their statistics in f32, softmax
// and attention keep theirs in f32 whatever the storage, and the loss and logit scale are f32 (CLIP casts the
// features up before normalising them).
//
// f16 activations overflow above 65504 and small gradients vanish below 2⁻²⁴, so a training step scales the
// loss before the backward pass (GradScaler): gradients are unscaled before the update, and a step whose
// gradients are not all finite is skipped and the scale halved; after `growthInterval` good steps in a row the
// scale doubles. PyTorch's defaults: 2¹⁶, ×2, ×½, 2000 steps.
import * as T from '../ops/index.ts';
import { elementwise } from '../kernels/elementwise.ts';
import { unscaleLimit, unscaleRaw } from '../kernels/optimizer.ts';

/** The dtype the matmul-class layers compute in. */
export type ComputeDType = 'f32' | 'f16';

let compute: ComputeDType = 'f32';

/** Runs fn with the matmul-class layers computing in `dtype` (see above); restores the previous policy after. */
export function autocast<R>(dtype: ComputeDType, fn: () => R): R {
  const previous = compute;
  compute = dtype;
  try {
    return fn();
  } finally {
    compute = previous;
  }
}

/** The dtype the matmul-class layers compute in now ('f32' outside autocast). */
export const computeDType = (): ComputeDType => compute;

/** x in the compute dtype: a differentiable cast, or a view of x when it already is. */
export const toCompute = (x: T.Tensor): T.Tensor => T.cast(x, compute);

/** y cast to the dtype of `like` (a residual stream): how an f16 branch joins an f32 stream. */
export const castLike = (y: T.Tensor, like: T.Tensor): T.Tensor => T.cast(y, like.dtype);

/** GradScaler's schedule (PyTorch's defaults: 2¹⁶, ×2 after 2000 good steps, ×0.5 on overflow). */
export interface LossScaleOptions {
  initScale?: number;
  growthFactor?: number;
  backoffFactor?: number;
  /** Good steps in a row before the scale grows. */
  growthInterval?: number;
}

/** Dynamic loss scaling (torch.cuda.amp.GradScaler's rules). */
export class GradScaler {
  scale: number;
  /** Good steps since the scale last changed. */
  goodSteps = 0;
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;

  constructor({ initScale = 2 ** 16, growthFactor = 2, backoffFactor = 0.5, growthInterval = 2000 }: LossScaleOptions = {}) {
    if (!(initScale > 0 && growthFactor > 1 && backoffFactor > 0 && backoffFactor < 1 && Number.isInteger(growthInterval) && growthInterval >= 1)) {
      throw new RangeError(
        'GradScaler: needs initScale > 0, growthFactor > 1, 0 < backoffFactor < 1 and an integer growthInterval ≥ 1, ' +
          `got ${initScale}, ${growthFactor}, ${backoffFactor}, ${growthInterval}`,
      );
    }
    this.scale = initScale;
    this.growthFactor = growthFactor;
    this.backoffFactor = backoffFactor;
    this.growthInterval = growthInterval;
  }

  /** The loss scale as a scalar tensor: the seed of the backward pass of a scaled loss (clip/step.ts). */
  seed(): T.Tensor {
    return T.Tensor.from(new Float32Array([this.scale]), []);
  }

  /**
   * After a backward pass of the scaled loss: divides every gradient of `params` by the scale in place, one
   * kernel per gradient that also flags any non-finite result, and returns the flag (an i32 [1]: 0 when every
   * gradient is finite) without reading it back. The divisor is read when the kernels are issued, and again at
   * each replay of a captured step (core/capture.ts), so this half of the work can be captured; update() is the
   * other half.
   */
  unscaleGradients(params: Iterable<T.Tensor>): T.Tensor {
    const flag = T.zeros([1], 'i32');
    const grads: T.Tensor[] = [];
    for (const p of params) {
      if (!p.grad) continue;
      // Written in place: a gradient whose storage another tensor also holds (two leaves' gradients may be views
      // of one upstream gradient; a leaf root's is the caller's seed) or that is not contiguous is copied first.
      if (p.grad.storage.shared || !p.grad.isContiguous) {
        const copy = T.keep(elementwise('identity', [p.grad]));
        p.grad.dispose();
        p.grad = copy;
      }
      grads.push(p.grad);
    }
    // Several gradients per dispatch: the vec4-able ones and the others apart (one odd size would make a whole
    // dispatch scalar).
    const limit = unscaleLimit();
    for (const vec4 of [true, false]) {
      const group = grads.filter((g) => (g.size % 4 === 0 && g.offset % 4 === 0) === vec4);
      for (let i = 0; i < group.length; i += limit) unscaleRaw(group.slice(i, i + limit), () => 1 / this.scale, flag);
    }
    for (const g of grads) g.bumpVersion();
    return flag;
  }

  /**
   * Given whether the unscaled gradients were all finite (the flag read back): when not, drops the gradients of
   * `params` and lowers the scale; then advances the schedule. Returns `finite` (whether to apply the update).
   */
  update(finite: boolean, params: Iterable<T.Tensor>): boolean {
    if (!finite) {
      for (const p of params) {
        p.grad?.dispose();
        p.grad = null;
      }
      this.scale *= this.backoffFactor;
      this.goodSteps = 0;
      return false;
    }
    if (++this.goodSteps >= this.growthInterval) {
      this.scale *= this.growthFactor;
      this.goodSteps = 0;
    }
    return true;
  }

  /**
   * unscaleGradients, the one readback of its flag, then update(): true when the gradients are finite and the
   * caller should apply the update (PyTorch's scaler.step skips it otherwise).
   */
  async unscale(params: Iterable<T.Tensor>): Promise<boolean> {
    const list = [...params];
    const flag = this.unscaleGradients(list);
    const finite = (await flag.item()) === 0;
    flag.dispose();
    return this.update(finite, list);
  }

  /** What a checkpoint keeps to resume the schedule exactly. */
  state(): { scale: number; goodSteps: number } {
    return { scale: this.scale, goodSteps: this.goodSteps };
  }

  /** Restores what state() returned (from a checkpoint). */
  load({ scale, goodSteps }: { scale: number; goodSteps: number }): void {
    if (!(scale > 0) || !Number.isInteger(goodSteps) || goodSteps < 0) {
      throw new RangeError(`GradScaler: a saved state needs scale > 0 and goodSteps ≥ 0, got ${scale} and ${goodSteps}`);
    }
    this.scale = scale;
    this.goodSteps = goodSteps;
  }
}
