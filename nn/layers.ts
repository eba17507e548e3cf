// Layers with PyTorch's parameter names, shapes and default initialisation.
import * as T from '../ops/index.ts';
import * as init from './init.ts';
import { Module } from './module.ts';
import { computeDType, toCompute } from './precision.ts';

/** A module that maps one tensor to one tensor. */
export abstract class Layer extends Module {
  /** The layer applied to x. */
  abstract forward(x: T.Tensor): T.Tensor;
}

/** y = x·Wᵀ + b with weight [out, in] (PyTorch's layout; the transpose is a view), in the compute dtype (nn/precision.ts). */
export class Linear extends Layer {
  readonly weight: T.Tensor;
  readonly bias: T.Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, { bias = true } = {}) {
    super();
    // PyTorch: kaiming_uniform(a = √5) for the weight, U(±1/√in) for the bias.
    this.weight = this.param('weight', init.kaimingUniform(T.Tensor.empty([outFeatures, inFeatures]), { a: Math.sqrt(5) }));
    const bound = 1 / Math.sqrt(inFeatures);
    this.bias = bias ? this.param('bias', init.uniform(T.Tensor.empty([outFeatures]), -bound, bound)) : null;
  }
  /**
   * y = x·Wᵀ + b, with an optional activation fused into the matmul's epilogue; with `residual`, residual + y in
   * the same kernel (a residual stream: its dtype is the result's, so an f16 branch joins an f32 stream without
   * a cast).
   */
  forward(x: T.Tensor, activation: T.Activation = 'none', residual?: T.Tensor): T.Tensor {
    // The weight is read in its own dtype by the kernel (no f16 copy of it is made or kept for the backward).
    const dtype = residual ? (residual.dtype as 'f32' | 'f16') : computeDType();
    return T.tidy(() => T.matmul(toCompute(x), T.transpose(this.weight), { bias: this.bias ?? undefined, activation, dtype, residual }));
  }
}

/** A lookup table [numEmbeddings, embeddingDim]: row i is the vector of id i (torch.nn.Embedding). */
export class Embedding extends Module {
  readonly weight: T.Tensor;
  constructor(readonly numEmbeddings: number, readonly embeddingDim: number) {
    super();
    this.weight = this.param('weight', init.normal(T.Tensor.empty([numEmbeddings, embeddingDim])));
  }
  /** The rows of `ids` (i32, any shape): [...ids.shape, embeddingDim]. */
  forward(ids: T.Tensor): T.Tensor {
    return T.embedding(this.weight, ids);
  }
}

/**
 * Layer norm over the last axis: statistics in f32 whatever the storage (CLIP's LayerNorm subclass casts to f32
 * for the same reason); the result has the input's dtype.
 */
export class LayerNorm extends Layer {
  readonly weight: T.Tensor;
  readonly bias: T.Tensor;
  constructor(readonly dim: number, readonly eps = 1e-5) {
    super();
    this.weight = this.param('weight', T.ones([dim]));
    this.bias = this.param('bias', T.zeros([dim]));
  }
  /** Normalises x over its last axis, then scales by weight and shifts by bias. */
  forward(x: T.Tensor): T.Tensor {
    return T.layerNorm(x, this.weight, this.bias, this.eps);
  }
}

/** Conv2d's options beyond the channels and kernel size (PyTorch's defaults: stride 1, padding 0, bias). */
export interface Conv2dConfig {
  stride?: number;
  padding?: number;
  bias?: boolean;
}

export class Conv2d extends Layer {
  readonly weight: T.Tensor;
  readonly bias: T.Tensor | null;
  readonly stride: number;
  readonly padding: number;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    { stride = 1, padding = 0, bias = true }: Conv2dConfig = {},
  ) {
    super();
    this.stride = stride;
    this.padding = padding;
    this.weight = this.param('weight', init.kaimingUniform(T.Tensor.empty([outChannels, inChannels, kernelSize, kernelSize]), { a: Math.sqrt(5) }));
    const bound = 1 / Math.sqrt(inChannels * kernelSize * kernelSize);
    this.bias = bias ? this.param('bias', init.uniform(T.Tensor.empty([outChannels]), -bound, bound)) : null;
  }
  /** In the compute dtype (nn/precision.ts). */
  forward(x: T.Tensor): T.Tensor {
    const { stride, padding } = this;
    return T.tidy(() => T.conv2d(toCompute(x), this.weight, { stride, padding, bias: this.bias ? toCompute(this.bias) : undefined, dtype: computeDType() }));
  }
}

/**
 * Batch norm over NCHW. Training: batch statistics, and running averages updated with `momentum`, the
 * running variance unbiased (× M/(M−1)) as PyTorch does. Eval: the running statistics. Computed in f32: an f16
 * input (a convolution under autocast) is cast up first.
 */
export class BatchNorm2d extends Layer {
  readonly weight: T.Tensor;
  readonly bias: T.Tensor;
  readonly runningMean: T.Tensor;
  readonly runningVar: T.Tensor;
  constructor(readonly numFeatures: number, readonly eps = 1e-5, readonly momentum = 0.1) {
    super();
    this.weight = this.param('weight', T.ones([numFeatures]));
    this.bias = this.param('bias', T.zeros([numFeatures]));
    this.runningMean = this.buffer('running_mean', T.zeros([numFeatures]));
    this.runningVar = this.buffer('running_var', T.ones([numFeatures]));
  }
  /** Batch statistics in training mode (updating the running ones), the running statistics in eval mode. */
  forward(input: T.Tensor): T.Tensor {
    return T.tidy(() => this.normalize(T.cast(input, 'f32')));
  }
  private normalize(x: T.Tensor): T.Tensor {
    if (!this.training) {
      return T.tidy(() => {
        const shape = [this.numFeatures, 1, 1];
        const scale = T.reshape(T.mul(this.weight, T.rsqrt(T.add(this.runningVar, this.eps))), shape);
        const shift = T.sub(T.reshape(this.bias, shape), T.mul(T.reshape(this.runningMean, shape), scale));
        return T.add(T.mul(x, scale), shift);
      });
    }
    const { y, mean, variance } = T.batchNorm2dTrain(x, this.weight, this.bias, this.eps);
    const M = x.size / this.numFeatures;
    T.noGrad(() =>
      T.tidy(() => {
        T.assign(this.runningMean, T.add(T.mul(this.runningMean, 1 - this.momentum), T.mul(mean, this.momentum)));
        T.assign(this.runningVar, T.add(T.mul(this.runningVar, 1 - this.momentum), T.mul(variance, (this.momentum * M) / (M - 1))));
      }),
    );
    mean.dispose();
    variance.dispose();
    return y;
  }
}

/** Average pooling over NCHW windows of kernelSize × kernelSize (torch.nn.AvgPool2d). */
export class AvgPool2d extends Layer {
  constructor(readonly kernelSize: number, readonly options: T.PoolOptions = {}) {
    super();
  }
  /** The pooled [N, C, H', W']. */
  forward(x: T.Tensor): T.Tensor {
    return T.avgPool2d(x, this.kernelSize, this.options);
  }
}

/** max(x, 0) as a layer. */
export class ReLU extends Layer {
  /** max(x, 0), elementwise. */
  forward = T.relu;
}
/** GELU (the exact erf form) as a layer. */
export class GELU extends Layer {
  /** GELU with the exact erf form, elementwise. */
  forward = T.gelu;
}
/** CLIP's activation: x · σ(1.702 x). */
export class QuickGELU extends Layer {
  /** x·σ(1.702x), OpenAI CLIP's GELU approximation, elementwise. */
  forward = T.quickgelu;
}

/** Children named "0", "1", … (PyTorch's nn.ModuleList keys). */
export class ModuleList<M extends Module> extends Module {
  constructor(readonly items: M[]) {
    super();
    items.forEach((m, i) => this.child(String(i), m));
  }
}

/**
 * Children named "0", "1", … (PyTorch's nn.Sequential keys), applied in order. Parameterless layers may be
 * added to `layers` without a key (as OpenAI's downsample pool, whose key "-1" holds nothing).
 */
export class Sequential extends Layer {
  readonly layers: Layer[];
  constructor(...layers: Layer[]) {
    super();
    this.layers = layers.map((l, i) => this.child(String(i), l));
  }
  /** x through every layer in order (intermediates freed as it goes). */
  forward(x: T.Tensor): T.Tensor {
    let h = x;
    for (const layer of this.layers) {
      const next = layer.forward(h);
      if (h !== x) h.dispose();
      h = next;
    }
    return h === x ? h.view(h.shape, h.strides) : h;
  }
}
