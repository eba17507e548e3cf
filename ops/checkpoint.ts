// Gradient checkpointing (Chen et al., 2016; torch.utils.checkpoint): a block's forward runs without recording
// its intermediates, and its backward runs the block again, this time recorded, and differentiates that. The
// activations of a deep network then cost one tensor per block (its input) instead of every intermediate, for
// one more forward pass of compute. CLIP's residual blocks use it when the model's `gradientCheckpointing` is
// set. The block must be a pure function of its input and the parameters it reads (no dropout, no batch-norm
// statistics being updated): the recomputation must produce what the forward did.
import type { Tensor } from '../core/tensor.ts';
import { detach, enableGrad, isGradEnabled, nestedBackward, noGrad, recorder, type Rules } from './tape.ts';

export interface CheckpointOps {
  checkpoint: { block: (x: Tensor) => Tensor; x: Tensor };
}
const recordOp = recorder<CheckpointOps>();

/**
 * block(x), keeping for backward only x: the block's own intermediates are recomputed when the gradient flows
 * back. Gradients reach x and every parameter the block reads, as without checkpointing.
 */
export function checkpoint(block: (x: Tensor) => Tensor, x: Tensor): Tensor {
  if (!isGradEnabled() || !x.requiresGrad) return block(x);
  const out = noGrad(() => block(x));
  recordOp('checkpoint', [x], out, { block, x });
  return out;
}

export const checkpointRules: Rules<CheckpointOps> = {
  checkpoint: (g, { block, x }) => {
    // The input as a leaf of its own graph: the recomputed block is differentiated into it (and into the params).
    const input = detach(x);
    input.requiresGrad = true;
    const out = enableGrad(() => block(input));
    nestedBackward(out, g);
    const dx = input.grad;
    input.grad = null;
    out.dispose();
    input.dispose();
    return [dx];
  },
};
