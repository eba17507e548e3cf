// Differentiable fused attention (kernels/attention.ts): attention over [B, tokens, heads, headDim] operands
// and self-attention on a packed QKV projection, with their backward rules.
import { Tensor } from '../core/tensor.ts';
import {
  attentionBackward, attentionForward, selfAttentionBackward, selfAttentionForward, type AttentionOptions, type AttentionSaved,
} from '../kernels/attention.ts';
import { recorder, type Rules } from './tape.ts';

export interface AttentionOps {
  attention: AttentionSaved;
  selfAttention: AttentionSaved;
}
const recordOp = recorder<AttentionOps>();

/**
 * Scaled-dot-product attention over heads: q [B, L, H, D], k and v [B, S, H, D] → [B, L, H, D].
 * Differentiable in q, k and v.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}): Tensor {
  const saved = attentionForward(q, k, v, options);
  recordOp('attention', [q, k, v], saved.o, saved);
  for (const t of [saved.q, saved.k, saved.v, saved.lse]) t.dispose();
  return saved.o;
}

/**
 * Self-attention on a packed projection qkv [B, L, 3·E] (Q, K, V side by side, PyTorch's in_proj order) →
 * [B, L, E] with the heads merged. The gradient flows back to qkv as one [B, L, 3·E] tensor.
 */
export function selfAttention(qkv: Tensor, heads: number, options: AttentionOptions = {}): Tensor {
  const { out, saved } = selfAttentionForward(qkv, heads, options);
  recordOp('selfAttention', [qkv], out, saved);
  for (const t of [saved.q, saved.k, saved.v, saved.o, saved.lse]) t.dispose();
  return out;
}

export const attentionRules: Rules<AttentionOps> = {
  attention: (g, saved, needs) => attentionBackward(g, saved, needs),
  selfAttention: (g, saved) => [selfAttentionBackward(g, saved)],
};
