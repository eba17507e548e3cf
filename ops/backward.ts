// The complete table of backward rules, assembled from the rules each op file declares beside its forwards,
// and backward() over it. OpCtx (what every op saves) is the union of the files' context interfaces, and the
// table is typed by it: an op without a rule, or a file whose rules are not spread here, fails to compile.
import type { Tensor } from '../core/tensor.ts';
import { attentionRules, type AttentionOps } from './attention.ts';
import { batchNormRules, type BatchNormOps } from './batchnorm.ts';
import { checkpointRules, type CheckpointOps } from './checkpoint.ts';
import { convRules, type ConvOps } from './conv.ts';
import { customRules, type CustomOps } from './custom.ts';
import { gatherRules, type GatherOps } from './gather.ts';
import { mathRules, type MathOps } from './math.ts';
import { matmulRules, type MatmulOps } from './matmul.ts';
import { movementRules, type MovementOps } from './movement.ts';
import { reduceRules, type ReduceOps } from './reduce.ts';
import { rowwiseRules, type RowwiseOps } from './rowwise.ts';
import { runBackward, type BackwardOptions, type Rules } from './tape.ts';

/** What each differentiable op saves for its backward. */
export type OpCtx = MathOps & ReduceOps & MovementOps & MatmulOps & RowwiseOps & AttentionOps & GatherOps & ConvOps & BatchNormOps & CustomOps & CheckpointOps;
/** The name of every differentiable op (each has a backward rule in backwardRules). */
export type OpName = keyof OpCtx;

/** Every op's backward rule by name: what `backward` runs, and what a gradient check walks. */
export const backwardRules: Rules<OpCtx> = {
  ...mathRules,
  ...reduceRules,
  ...movementRules,
  ...matmulRules,
  ...rowwiseRules,
  ...attentionRules,
  ...gatherRules,
  ...convRules,
  ...batchNormRules,
  ...customRules,
  ...checkpointRules,
};

/**
 * Accumulates d(root)/d(leaf) into leaf.grad for every leaf that requires grad. A non-scalar root needs an
 * explicit seed gradient of its shape.
 */
export function backward(root: Tensor, seed?: Tensor, options?: BackwardOptions): void {
  runBackward(backwardRules, root, seed, options);
}
