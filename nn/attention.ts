// Multi-head attention with PyTorch's packed parameters (in_proj_weight [3E, E], in_proj_bias [3E],
// out_proj.weight / out_proj.bias), so OpenAI CLIP checkpoints load by name.
//
// All heads run at once in the fused attention kernels (kernels/attention.ts): self-attention reads Q, K and V
// straight out of the packed projection, and a causal mask is a flag, not a tensor. An arbitrary additive
// mask, or heads for which T.useFusedAttention says batched matmuls are faster, take the unfused path: Q,
// K, V viewed as [B, heads, L, d], the scores one batched matmul, the mask a broadcast add, then the softmax
// kernel and a second batched matmul.
import * as T from '../ops/index.ts';
import * as init from './init.ts';
import { Linear } from './layers.ts';
import { Module } from './module.ts';
import { computeDType, toCompute } from './precision.ts';

/** How queries may attend: an additive mask, or causal (each query sees itself and earlier keys). */
export interface AttentionOptions {
  /** Additive mask broadcast to [B, heads, L, S], e.g. [L, S] with −inf where attention is forbidden. */
  attnMask?: T.Tensor;
  /** Query i sees keys j ≤ i only (the same as causalMask(L) as attnMask, without the tensor). */
  causal?: boolean;
}

/** Multi-head attention as torch.nn.MultiheadAttention (packed in_proj_weight): fused kernels where heads fit them. */
export class MultiheadAttention extends Module {
  readonly inProjWeight: T.Tensor;
  readonly inProjBias: T.Tensor;
  readonly outProj: Linear;
  readonly headDim: number;
  /** Causal masks by sequence length, for the unfused path (wide heads). */
  private readonly causalMasks = new Map<number, T.Tensor>();

  constructor(
    readonly embedDim: number,
    readonly numHeads: number,
    /** Input as [B, L, E] (true) or [L, B, E] (false, PyTorch's default and CLIP's layout). */
    readonly batchFirst = false,
  ) {
    super();
    if (embedDim % numHeads !== 0) throw new RangeError(`MultiheadAttention: embedDim ${embedDim} is not divisible by numHeads ${numHeads}`);
    this.headDim = embedDim / numHeads;
    this.inProjWeight = this.param('in_proj_weight', init.xavierUniform(T.Tensor.empty([3 * embedDim, embedDim])));
    this.inProjBias = this.param('in_proj_bias', T.zeros([3 * embedDim]));
    this.outProj = this.child('out_proj', new Linear(embedDim, embedDim));
    init.zeros(this.outProj.bias!);
  }

  /**
   * Self-attention when key and value are omitted. Returns the attended values in the input's layout; with
   * `residual` (of that shape), residual + the attended values, added in the output projection's kernel.
   */
  forward(query: T.Tensor, key = query, value = key, { attnMask, causal = false, residual }: AttentionOptions & { residual?: T.Tensor } = {}): T.Tensor {
    return T.tidy(() => {
      const E = this.embedDim;
      const toBatchFirst = (t: T.Tensor) => (this.batchFirst ? t : T.transpose(t, 0, 1));
      const [q, k, v] = [query, key, value].map(toBatchFirst);
      // The projections and attention run in the compute dtype (nn/precision.ts); so does the result.
      const [weight, bias, dtype] = [this.inProjWeight, this.inProjBias, computeDType()];
      const project = (x: T.Tensor, part: number) =>
        T.matmul(toCompute(x), T.transpose(T.narrow(weight, 0, part * E, E)), { bias: T.narrow(bias, 0, part * E, E), dtype });
      // Heads the fused kernels do not take here run unfused, where `causal` becomes a mask tensor: made once
      // per sequence length and kept by the module rather than uploaded on every call.
      const wide = !T.useFusedAttention(this.headDim, causal);
      const mask = attnMask ?? (causal && wide ? this.causalMaskFor(q.shape[1]) : undefined);
      let attended: T.Tensor;
      if (query === key && key === value) {
        // One matmul for all three projections; the fused kernel reads its thirds in place.
        const qkv = T.matmul(toCompute(q), T.transpose(weight), { bias, dtype });
        attended =
          mask || wide
            ? attend(T.narrow(qkv, 2, 0, E), T.narrow(qkv, 2, E, E), T.narrow(qkv, 2, 2 * E, E), this.numHeads, { attnMask: mask })
            : T.selfAttention(qkv, this.numHeads, { causal });
      } else {
        attended = attend(project(q, 0), project(k, 1), project(v, 2), this.numHeads, { attnMask: mask, causal });
      }
      if (this.batchFirst) return this.outProj.forward(attended, 'none', residual);
      const y = T.contiguous(T.transpose(this.outProj.forward(attended), 0, 1));
      return residual ? T.add(residual, T.cast(y, residual.dtype)) : y;
    });
  }

  private causalMaskFor(n: number): T.Tensor {
    let mask = this.causalMasks.get(n);
    if (!mask) this.causalMasks.set(n, (mask = T.keep(causalMask(n))));
    return mask;
  }

  override dispose(): void {
    super.dispose();
    for (const mask of this.causalMasks.values()) mask.dispose();
    this.causalMasks.clear();
  }
}

/**
 * softmax(Q·Kᵀ/√d + mask)·V for projected Q [B, L, E], K and V [B, S, E], split into `heads` heads of
 * d = E / heads; returns [B, L, E] with the heads merged back. Fused unless an additive mask is given or
 * T.useFusedAttention says batched matmuls are faster for these heads (then `causal` builds its mask tensor).
 */
export function attend(Q: T.Tensor, K: T.Tensor, V: T.Tensor, heads: number, { attnMask, causal = false }: AttentionOptions = {}): T.Tensor {
  const [B, L, E] = Q.shape;
  const d = E / heads;
  if (attnMask || !T.useFusedAttention(d, causal)) return attendUnfused(Q, K, V, heads, attnMask ?? (causal ? causalMask(L) : undefined));
  return T.tidy(() => {
    const split = (t: T.Tensor) => T.reshape(t, [B, t.shape[1], heads, d]);
    return T.reshape(T.attention(split(Q), split(K), split(V), { causal }), [B, L, E]);
  });
}

/** attend() by batched matmuls and the softmax kernel, with an optional additive mask; Q is scaled before the
 * product, as PyTorch does. */
export function attendUnfused(Q: T.Tensor, K: T.Tensor, V: T.Tensor, heads: number, attnMask?: T.Tensor): T.Tensor {
  return T.tidy(() => {
    const [B, L, E] = Q.shape;
    const S = K.shape[1];
    const d = E / heads;
    const split = (t: T.Tensor, len: number) => T.permute(T.reshape(t, [B, len, heads, d]), [0, 2, 1, 3]);
    const scores = T.matmul(T.mul(split(Q, L), 1 / Math.sqrt(d)), T.transpose(split(K, S)));
    // An f32 mask (−inf is exact in f16) is cast to f16 scores' dtype: mixed-dtype adds are refused.
    const mask = attnMask && attnMask.dtype !== scores.dtype ? T.cast(attnMask, scores.dtype) : attnMask;
    const attn = T.softmax(mask ? T.add(scores, mask) : scores);
    const out = T.matmul(attn, split(V, S)); // [B, heads, L, d]
    return T.reshape(T.permute(out, [0, 2, 1, 3]), [B, L, E]);
  });
}

/** The additive causal mask [n, n]: 0 on and below the diagonal, −inf above (CLIP's build_attention_mask). */
export function causalMask(n: number): T.Tensor {
  const data = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) data[i * n + j] = -Infinity;
  return T.Tensor.from(data, [n, n]);
}
