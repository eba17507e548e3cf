// The tape. Each differentiable op records a Node on its output: the op name, its inputs and a context of
// whatever its backward rule needs. Tensors saved in a context are aliases that keep their storage alive even
// if the user disposes the original. Nodes are reference counted (one for the output tensor, one per
// consumer node), so disposing the tensors of an abandoned forward pass frees its saved tensors too.
// The typed table of backward rules and the backward() driver live in kernels/autodiff.ts.
import { Tensor, keep } from './tensor.ts';

let gradEnabled = true;

/** Runs fn without recording anything for autodiff (inference, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

export const isGradEnabled = (): boolean => gradEnabled;

export class Node {
  private refs = 1;
  private released = false;
  /** The nodes that produced the inputs (null for leaves and constants), captured before inputs can be disposed. */
  readonly parents: readonly (Node | null)[];

  constructor(
    readonly op: string,
    /** Operands in the op's argument order (null where an operand was a plain number); gradients come back in the same order. */
    readonly inputs: readonly (Tensor | null)[],
    readonly ctx: Record<string, unknown>,
  ) {
    this.parents = inputs.map((t) => t?.node ?? null);
    for (const p of this.parents) p?.ref();
  }

  ref(): void {
    this.refs++;
  }

  unref(): void {
    if (--this.refs > 0) return;
    this.releaseSaved();
    for (const p of this.parents) p?.unref();
  }

  /** Frees the tensors saved for backward; called after backward() and when the node dies. */
  releaseSaved(): void {
    if (this.released) return;
    this.released = true;
    for (const v of Object.values(this.ctx)) if (v instanceof Tensor) v.dispose();
  }

  get isReleased(): boolean {
    return this.released;
  }
}

/**
 * Attaches a node to `out` when autodiff is on and some input requires grad. Tensor-valued fields of ctx are
 * replaced by aliases owned by the node (untracked by scopes).
 */
export function record(op: string, inputs: readonly (Tensor | null)[], out: Tensor, ctx: Record<string, unknown>): void {
  if (!gradEnabled || !inputs.some((t) => t?.requiresGrad)) return;
  const saved: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(ctx)) saved[k] = v instanceof Tensor ? keep(v.view(v.shape, v.strides)) : v;
  out.requiresGrad = true;
  out.node = new Node(op, inputs, saved);
}
