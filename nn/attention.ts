// Multi-head attention with PyTorch's packed parameters (in_proj_weight [3E, E], in_proj_bias [3E],
// out_proj.weight / out_proj.bias), so OpenAI CLIP checkpoints load by name.
//
// All heads run at once: Q, K, V are viewed as [B, heads, L, headDim] (views, no copies), the scores are one
// batched matmul, the optional additive mask (−inf above the diagonal for CLIP's text encoder) is a broadcast
// add, and the fused softmax kernel normalises every row.
import * as T from '../kernels/index.ts';
import * as init from './init.ts';
import { Linear } from './layers.ts';
import { Module } from './module.ts';

export interface AttentionOptions {
  /** Additive mask broadcast to [B, heads, L, S], e.g. [L, S] with −inf where attention is forbidden. */
  attnMask?: T.Tensor;
}

export class MultiheadAttention extends Module {
  readonly inProjWeight: T.Tensor;
  readonly inProjBias: T.Tensor;
  readonly outProj: Linear;
  readonly headDim: number;

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

  /** Self-attention when key and value are omitted. Returns the attended values in the input's layout. */
  forward(query: T.Tensor, key = query, value = key, { attnMask }: AttentionOptions = {}): T.Tensor {
    return T.tidy(() => {
      const E = this.embedDim;
      const toBatchFirst = (t: T.Tensor) => (this.batchFirst ? t : T.transpose(t, 0, 1));
      const [q, k, v] = [query, key, value].map(toBatchFirst);
      const project = (x: T.Tensor, part: number) =>
        T.matmul(x, T.transpose(T.narrow(this.inProjWeight, 0, part * E, E)), { bias: T.narrow(this.inProjBias, 0, part * E, E) });
      let Q: T.Tensor, K: T.Tensor, V: T.Tensor;
      if (query === key && key === value) {
        // One matmul for all three projections, then views of its thirds.
        const qkv = T.matmul(q, T.transpose(this.inProjWeight), { bias: this.inProjBias });
        [Q, K, V] = [0, 1, 2].map((i) => T.narrow(qkv, 2, i * E, E));
      } else {
        [Q, K, V] = [project(q, 0), project(k, 1), project(v, 2)];
      }
      const y = this.outProj.forward(attend(Q, K, V, this.numHeads, attnMask));
      return this.batchFirst ? y : T.contiguous(T.transpose(y, 0, 1));
    });
  }
}

/**
 * softmax(Q·Kᵀ/√d + mask)·V for projected Q [B, L, E], K and V [B, S, E], split into `heads` heads of
 * d = E / heads; returns [B, L, E] with the heads merged back. Q is scaled before the product, as PyTorch does.
 */
export function attend(Q: T.Tensor, K: T.Tensor, V: T.Tensor, heads: number, attnMask?: T.Tensor): T.Tensor {
  return T.tidy(() => {
    const [B, L, E] = Q.shape;
    const S = K.shape[1];
    const d = E / heads;
    const split = (t: T.Tensor, len: number) => T.permute(T.reshape(t, [B, len, heads, d]), [0, 2, 1, 3]);
    const scores = T.matmul(T.mul(split(Q, L), 1 / Math.sqrt(d)), T.transpose(split(K, S)));
    const attn = T.softmax(attnMask ? T.add(scores, attnMask) : scores);
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
