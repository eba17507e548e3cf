// CLIP (Radford et al., 2021, §2.4–2.5): an image encoder (ViT or ModifiedResNet) and a causal text
// Transformer, each followed by a linear projection into a shared embedding space, compared by cosine
// similarity scaled by a learned temperature. Parameter names equal OpenAI's state-dict keys.
import * as T from '../ops/index.ts';
import { MultiheadAttention, attend, type AttentionOptions } from '../nn/attention.ts';
import * as init from '../nn/init.ts';
import { AvgPool2d, BatchNorm2d, Conv2d, Embedding, LayerNorm, Layer, Linear, ModuleList, QuickGELU, Sequential } from '../nn/layers.ts';
import { Module } from '../nn/module.ts';
import { autocast, castLike, computeDType, toCompute } from '../nn/precision.ts';
import { visionHeads, type ClipConfig } from './config.ts';
import type { Prompts } from './prompts.ts';

// ---- Transformer (shared by the ViT and the text encoder) ----------------------------------------------------

class Mlp extends Layer {
  readonly cFc: Linear;
  readonly cProj: Linear;
  constructor(width: number) {
    super();
    this.cFc = this.child('c_fc', new Linear(width, 4 * width));
    this.child('gelu', new QuickGELU());
    this.cProj = this.child('c_proj', new Linear(4 * width, width));
  }
  /** c_proj(quickgelu(c_fc(x))), plus `residual` in c_proj's kernel when given. */
  forward(x: T.Tensor, residual?: T.Tensor): T.Tensor {
    return T.tidy(() => this.cProj.forward(this.cFc.forward(x, 'quickgelu'), 'none', residual));
  }
}

/**
 * Pre-norm residual block: x + attn(ln_1(x)), then x + mlp(ln_2(x)). Each addition happens in the epilogue of the
 * branch's last matmul (the output projections), which also writes the residual stream's dtype: under autocast
 * the f16 branches join the f32 stream there, without a cast.
 */
export class ResidualAttentionBlock extends Module {
  readonly attn: MultiheadAttention;
  readonly ln1: LayerNorm;
  readonly mlp: Mlp;
  readonly ln2: LayerNorm;
  constructor(width: number, heads: number) {
    super();
    // Batch-first internally: the same math as OpenAI's sequence-first layout, without the transposes.
    this.attn = this.child('attn', new MultiheadAttention(width, heads, true));
    this.ln1 = this.child('ln_1', new LayerNorm(width));
    this.mlp = this.child('mlp', new Mlp(width));
    this.ln2 = this.child('ln_2', new LayerNorm(width));
  }
  /** x + attention(ln_1(x)), then + mlp(ln_2(x)), on [L, B, width] (CLIP's sequence-first layout). */
  forward(x: T.Tensor, mask: AttentionOptions = {}): T.Tensor {
    return T.tidy(() => {
      const h = this.attn.forward(this.ln1.forward(x), undefined, undefined, { ...mask, residual: x });
      return this.mlp.forward(this.ln2.forward(h), h);
    });
  }
}

/** A stack of residual attention blocks (`resblocks.0` …): the text tower, and a ViT's body. */
export class Transformer extends Module {
  readonly blocks: ResidualAttentionBlock[];
  /**
   * Recompute each block in the backward pass instead of keeping its activations (ops/checkpoint.ts): the
   * activation memory of training falls to one tensor per block, for one more forward pass of compute.
   */
  gradientCheckpointing = false;
  constructor(readonly width: number, readonly layers: number, heads: number) {
    super();
    const list = this.child('resblocks', new ModuleList(Array.from({ length: layers }, () => new ResidualAttentionBlock(width, heads))));
    this.blocks = list.items;
  }
  /** x [B, L, width] → [B, L, width]; `mask` says which keys each query sees (default: all). */
  forward(x: T.Tensor, mask: AttentionOptions = {}): T.Tensor {
    let h = x;
    // The recomputation runs in the precision the forward ran in (autocast's, at this moment).
    const dtype = computeDType();
    for (const block of this.blocks) {
      const next = this.gradientCheckpointing ? T.checkpoint((y) => autocast(dtype, () => block.forward(y, mask)), h) : block.forward(h, mask);
      if (h !== x) h.dispose();
      h = next;
    }
    return h;
  }
}

// ---- Vision Transformer ------------------------------------------------------------------------------------------

/** CLIP's ViT image tower: patch embedding, class token, positional embedding, transformer, projection (§2.4). */
export class VisionTransformer extends Module {
  readonly conv1: Conv2d;
  readonly classEmbedding: T.Tensor;
  readonly positionalEmbedding: T.Tensor;
  readonly lnPre: LayerNorm;
  readonly transformer: Transformer;
  readonly lnPost: LayerNorm;
  readonly proj: T.Tensor;

  constructor(readonly resolution: number, readonly patchSize: number, readonly width: number, layers: number, heads: number, outputDim: number) {
    super();
    const scale = width ** -0.5;
    const grid = Math.floor(resolution / patchSize);
    this.conv1 = this.child('conv1', new Conv2d(3, width, patchSize, { stride: patchSize, bias: false }));
    this.classEmbedding = this.param('class_embedding', T.randNormal([width], 0, scale));
    this.positionalEmbedding = this.param('positional_embedding', T.randNormal([grid * grid + 1, width], 0, scale));
    this.lnPre = this.child('ln_pre', new LayerNorm(width));
    this.transformer = this.child('transformer', new Transformer(width, layers, heads));
    this.lnPost = this.child('ln_post', new LayerNorm(width));
    this.proj = this.param('proj', T.randNormal([width, outputDim], 0, scale));
  }

  /** images [N, 3, R, R] → features [N, outputDim] (in the compute dtype). */
  forward(images: T.Tensor): T.Tensor {
    return T.tidy(() => T.matmul(toCompute(this.representation(images)), this.proj, { dtype: computeDType() }));
  }

  /** The class token after ln_post, before the projection to the joint embedding ([N, width]; the paper's
   * I_f, which its linear probes use for ViTs). */
  representation(images: T.Tensor): T.Tensor {
    return T.tidy(() => {
      const N = images.shape[0];
      const patches = this.conv1.forward(images); // [N, width, grid, grid]
      // The residual stream takes the embeddings' dtype (f32 master weights under autocast; f16 weights in f16).
      const tokens = castLike(T.permute(T.reshape(patches, [N, this.width, -1]), [0, 2, 1]), this.classEmbedding); // [N, grid², width]
      const cls = T.expand(T.reshape(this.classEmbedding, [1, 1, this.width]), [N, 1, this.width]);
      const x = this.lnPre.forward(T.add(T.concat([cls, tokens], 1), this.positionalEmbedding));
      const h = this.transformer.forward(x);
      const first = T.reshape(T.narrow(h, 1, 0, 1), [N, this.width]);
      return this.lnPost.forward(first);
    });
  }
}

// ---- ModifiedResNet ------------------------------------------------------------------------------------------------

/** Bottleneck with anti-aliased striding: an average pool before the third conv (and in the downsample path). */
class Bottleneck extends Layer {
  static readonly expansion = 4;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly avgpool: AvgPool2d | null;
  readonly conv3: Conv2d;
  readonly bn3: BatchNorm2d;
  readonly downsample: Sequential | null;

  constructor(inplanes: number, planes: number, stride = 1) {
    super();
    this.conv1 = this.child('conv1', new Conv2d(inplanes, planes, 1, { bias: false }));
    this.bn1 = this.child('bn1', new BatchNorm2d(planes));
    this.conv2 = this.child('conv2', new Conv2d(planes, planes, 3, { padding: 1, bias: false }));
    this.bn2 = this.child('bn2', new BatchNorm2d(planes));
    this.avgpool = stride > 1 ? new AvgPool2d(stride) : null;
    this.conv3 = this.child('conv3', new Conv2d(planes, planes * Bottleneck.expansion, 1, { bias: false }));
    this.bn3 = this.child('bn3', new BatchNorm2d(planes * Bottleneck.expansion));
    this.downsample = null;
    if (stride > 1 || inplanes !== planes * Bottleneck.expansion) {
      // OpenAI's keys: downsample.0 (conv), downsample.1 (bn), after a parameterless pool (its "-1").
      const layers: Layer[] = [new Conv2d(inplanes, planes * Bottleneck.expansion, 1, { bias: false }), new BatchNorm2d(planes * Bottleneck.expansion)];
      this.downsample = this.child('downsample', new Sequential(...layers));
      if (stride > 1) this.downsample.layers.unshift(new AvgPool2d(stride));
    }
  }

  forward(x: T.Tensor): T.Tensor {
    return T.tidy(() => {
      let out = T.relu(this.bn1.forward(this.conv1.forward(x)));
      out = T.relu(this.bn2.forward(this.conv2.forward(out)));
      if (this.avgpool) out = this.avgpool.forward(out);
      out = this.bn3.forward(this.conv3.forward(out));
      const identity = this.downsample ? this.downsample.forward(x) : x;
      return T.relu(T.add(out, identity));
    });
  }
}

/** Attention pooling: the mean token attends over the flattened grid (plus positional embeddings). */
class AttentionPool2d extends Module {
  readonly positionalEmbedding: T.Tensor;
  readonly kProj: Linear;
  readonly qProj: Linear;
  readonly vProj: Linear;
  readonly cProj: Linear;
  constructor(spacialDim: number, readonly embedDim: number, readonly numHeads: number, outputDim: number) {
    super();
    this.positionalEmbedding = this.param('positional_embedding', T.randNormal([spacialDim * spacialDim + 1, embedDim], 0, embedDim ** -0.5));
    this.kProj = this.child('k_proj', new Linear(embedDim, embedDim));
    this.qProj = this.child('q_proj', new Linear(embedDim, embedDim));
    this.vProj = this.child('v_proj', new Linear(embedDim, embedDim));
    this.cProj = this.child('c_proj', new Linear(embedDim, outputDim));
  }
  /** x [N, C, H, W] → [N, outputDim]. */
  forward(x: T.Tensor): T.Tensor {
    return T.tidy(() => {
      const [N, C] = x.shape;
      const tokens = T.permute(T.reshape(x, [N, C, -1]), [0, 2, 1]); // [N, HW, C]
      const seq = T.add(T.concat([T.mean(tokens, 1, { keepDims: true }), tokens], 1), castLike(this.positionalEmbedding, tokens));
      const query = T.narrow(seq, 1, 0, 1);
      const out = attend(this.qProj.forward(query), this.kProj.forward(seq), this.vProj.forward(seq), this.numHeads);
      return T.reshape(this.cProj.forward(out), [N, -1]);
    });
  }
}

/** CLIP's ResNet image tower: a 3-convolution stem, anti-aliased bottlenecks and an attention pool (§2.4). */
export class ModifiedResNet extends Module {
  readonly stem: [Conv2d, BatchNorm2d][];
  readonly stages: Sequential[];
  readonly attnpool: AttentionPool2d;

  constructor(layers: readonly number[], outputDim: number, heads: number, resolution: number, width: number) {
    super();
    const half = width / 2;
    this.stem = [
      [this.child('conv1', new Conv2d(3, half, 3, { stride: 2, padding: 1, bias: false })), this.child('bn1', new BatchNorm2d(half))],
      [this.child('conv2', new Conv2d(half, half, 3, { padding: 1, bias: false })), this.child('bn2', new BatchNorm2d(half))],
      [this.child('conv3', new Conv2d(half, width, 3, { padding: 1, bias: false })), this.child('bn3', new BatchNorm2d(width))],
    ];
    let inplanes = width;
    this.stages = layers.map((blocks, i) => {
      const planes = width * 2 ** i;
      const list = Array.from({ length: blocks }, (_, b) => {
        const block = new Bottleneck(inplanes, planes, b === 0 && i > 0 ? 2 : 1);
        inplanes = planes * Bottleneck.expansion;
        return block;
      });
      return this.child(`layer${i + 1}`, new Sequential(...list));
    });
    this.attnpool = this.child('attnpool', new AttentionPool2d(Math.floor(resolution / 32), width * 32, heads, outputDim));
  }

  /** Image features [N, outputDim] of normalised images [N, 3, resolution, resolution]. */
  forward(images: T.Tensor): T.Tensor {
    return T.tidy(() => {
      let x = images;
      for (const [conv, bn] of this.stem) x = T.relu(bn.forward(conv.forward(x)));
      x = T.avgPool2d(x, 2);
      for (const stage of this.stages) x = stage.forward(x);
      return this.attnpool.forward(x);
    });
  }
}

// ---- CLIP ------------------------------------------------------------------------------------------------------

/** One forward pass over paired images and texts: both sides' features and the logits both ways. */
export interface ClipOutput {
  imageFeatures: T.Tensor;
  textFeatures: T.Tensor;
  logitsPerImage: T.Tensor;
  logitsPerText: T.Tensor;
}

/** CLIP (Radford et al., 2021): an image tower and a text tower projected into one space, with a learned temperature. */
export class CLIP extends Module {
  readonly visual: VisionTransformer | ModifiedResNet;
  readonly transformer: Transformer;
  readonly tokenEmbedding: Embedding;
  readonly positionalEmbedding: T.Tensor;
  readonly lnFinal: LayerNorm;
  readonly textProjection: T.Tensor;
  readonly logitScale: T.Tensor;
  /**
   * The zero-shot classes and prompt templates this model was evaluated with, when known (a run trained here
   * records them in the weights' metadata); zero-shot classification uses these templates by default.
   */
  prompts: Prompts | null = null;
  /** Gradient checkpointing in both towers' transformers (see Transformer.gradientCheckpointing). */
  set gradientCheckpointing(on: boolean) {
    this.transformer.gradientCheckpointing = on;
    if (this.visual instanceof VisionTransformer) this.visual.transformer.gradientCheckpointing = on;
  }
  get gradientCheckpointing(): boolean {
    return this.transformer.gradientCheckpointing;
  }
  /** The weights' precision: 'f16' after half() (inference only), which also makes the encoders compute in f16. */
  precision: 'f32' | 'f16' = 'f32';

  constructor(readonly config: ClipConfig) {
    super();
    const c = config;
    const heads = visionHeads(c);
    this.visual = this.child(
      'visual',
      Array.isArray(c.visionLayers)
        ? new ModifiedResNet(c.visionLayers, c.embedDim, heads, c.imageResolution, c.visionWidth)
        : new VisionTransformer(c.imageResolution, c.visionPatchSize!, c.visionWidth, c.visionLayers, heads, c.embedDim),
    );
    this.transformer = this.child('transformer', new Transformer(c.transformerWidth, c.transformerLayers, c.transformerHeads));
    this.tokenEmbedding = this.child('token_embedding', new Embedding(c.vocabSize, c.transformerWidth));
    this.positionalEmbedding = this.param('positional_embedding', T.zeros([c.contextLength, c.transformerWidth]));
    this.lnFinal = this.child('ln_final', new LayerNorm(c.transformerWidth));
    this.textProjection = this.param('text_projection', T.zeros([c.transformerWidth, c.embedDim]));
    // The temperature, stored as a log: τ = 0.07 at initialisation (§2.5).
    this.logitScale = this.param('logit_scale', T.fill([], Math.log(1 / 0.07)));
    this.initialize();
  }

  /** OpenAI's initialize_parameters. */
  private initialize(): void {
    init.normal(this.tokenEmbedding.weight, 0, 0.02);
    init.normal(this.positionalEmbedding, 0, 0.01);
    if (this.visual instanceof ModifiedResNet) {
      const pool = this.visual.attnpool;
      const std = pool.cProj.inFeatures ** -0.5;
      for (const l of [pool.qProj, pool.kProj, pool.vProj, pool.cProj]) init.normal(l.weight, 0, std);
      for (const stage of this.visual.stages) for (const [name, p] of stage.namedParameters()) if (name.endsWith('bn3.weight')) init.zeros(p);
    }
    const w = this.transformer.width;
    const projStd = w ** -0.5 * (2 * this.transformer.layers) ** -0.5;
    for (const block of this.transformer.blocks) {
      init.normal(block.attn.inProjWeight, 0, w ** -0.5);
      init.normal(block.attn.outProj.weight, 0, projStd);
      init.normal(block.mlp.cFc.weight, 0, (2 * w) ** -0.5);
      init.normal(block.mlp.cProj.weight, 0, projStd);
    }
    init.normal(this.textProjection, 0, w ** -0.5);
  }

  /**
   * The weights in f16 for inference, converted in place as openai/CLIP's convert_weights does for its GPU
   * models: every parameter but the norms' (layer- and batch-norm weights and statistics stay f32, as their
   * kernels read them) and the logit scale; about half the bytes. From then on the encoders compute in f16
   * (autocast) and the model cannot be trained (its f16 weights take no gradient).
   */
  half(): this {
    const norms = new Set(this.namedModules().filter(([, m]) => m instanceof LayerNorm || m instanceof BatchNorm2d).map(([name]) => name));
    this.convertParameters('f16', (name) => name !== 'logit_scale' && !norms.has(name.slice(0, name.lastIndexOf('.'))));
    this.precision = 'f16';
    return this;
  }

  /** fn under autocast('f16') when the weights are f16; else under the caller's policy. */
  private inPrecision<R>(fn: () => R): R {
    return this.precision === 'f16' ? autocast('f16', fn) : fn();
  }

  /** Image features [N, embedDim], in the compute dtype (f16 under autocast or after half()). */
  encodeImage(images: T.Tensor): T.Tensor {
    return this.inPrecision(() => this.visual.forward(images));
  }

  /** Image features for linear probes (Appendix A.3), in f32: a ViT's representation before its projection; a
   * ResNet's attention-pool output (its last layer, which has no separate projection). */
  imageRepresentation(images: T.Tensor): T.Tensor {
    return this.inPrecision(() =>
      T.tidy(() =>
        T.cast(this.visual instanceof VisionTransformer ? this.visual.representation(images) : this.visual.forward(images), 'f32'),
      ),
    );
  }

  /**
   * tokens [B, L] (i32) → features [B, embedDim], taken at each text's end-of-text token (its largest id), in the
   * compute dtype.
   */
  encodeText(tokens: T.Tensor): T.Tensor {
    return this.inPrecision(() => T.tidy(() => {
      const [B, L] = tokens.shape;
      const x = T.add(this.tokenEmbedding.forward(tokens), this.positionalEmbedding);
      const h = this.lnFinal.forward(this.transformer.forward(x, { causal: true }));
      const rows = T.add(T.mul(T.arange(B), L), T.argmax(tokens, -1));
      const eot = T.indexSelect(T.reshape(h, [B * L, this.config.transformerWidth]), 0, rows);
      return T.matmul(toCompute(eot), this.textProjection, { dtype: computeDType() });
    }));
  }

  /** exp(logit_scale), clamped at 100 as in training. */
  scale(): T.Tensor {
    return T.exp(T.clamp(this.logitScale, -Infinity, Math.log(100)));
  }

  /** Features in the compute dtype; logits (from f32 normalised features) in f32. */
  forward(images: T.Tensor, tokens: T.Tensor): ClipOutput {
    return T.tidy(() => {
      const imageFeatures = this.encodeImage(images);
      const textFeatures = this.encodeText(tokens);
      const logitsPerImage = contrastiveLogits(l2normalize(imageFeatures), l2normalize(textFeatures), this.scale());
      return { imageFeatures, textFeatures, logitsPerImage, logitsPerText: T.transpose(logitsPerImage) };
    });
  }
}

/** logit_scale · image·textᵀ for L2-normalised features: logits per image [N_images, N_texts]. */
export function contrastiveLogits(imageFeatures: T.Tensor, textFeatures: T.Tensor, scale: T.Tensor): T.Tensor {
  return T.tidy(() => T.mul(T.matmul(imageFeatures, T.transpose(textFeatures)), scale));
}

/** x / ‖x‖ along the last axis, in f32 (f16 features are cast up: the logits and the loss stay f32). */
export function l2normalize(features: T.Tensor): T.Tensor {
  return T.tidy(() => {
    const x = T.cast(features, 'f32');
    return T.mul(x, T.rsqrt(T.sum(T.mul(x, x), -1, { keepDims: true })));
  });
}

/** The symmetric contrastive loss (§2.5, Figure 3): mean of image→text and text→image cross-entropy. */
export function clipLoss(logitsPerImage: T.Tensor, logitsPerText: T.Tensor): T.Tensor {
  return T.tidy(() => {
    const labels = T.arange(logitsPerImage.shape[0]);
    return T.mul(T.add(T.crossEntropy(logitsPerImage, labels), T.crossEntropy(T.contiguous(logitsPerText), labels)), 0.5);
  });
}
