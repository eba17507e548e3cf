// The tape: reverse-mode autodiff's bookkeeping and its driver. It knows no op: each op file declares the
// context its ops save (an interface), records through a `recorder` typed by it, and exports its backward
// rules next to its forwards; ops/backward.ts assembles the complete table.
//
// Each differentiable op records a Node on its output: the op name, its inputs and a context of whatever its
// backward rule needs. Tensors saved in a context are aliases that keep their storage alive even if the user
// disposes the original. Nodes are reference counted (one for the output tensor, one per consumer node), so
// disposing the tensors of an abandoned forward pass frees its saved tensors too.
import { DTypeError, ShapeError, TensorError, fmtShape } from '../core/errors.ts';
import { sameShape } from '../core/shape.ts';
import { Tensor, keep, tidy, type GradNode } from '../core/tensor.ts';
import { onesLike } from '../kernels/creation.ts';
import { elementwise } from '../kernels/elementwise.ts';

let gradEnabled = true;

/** Runs fn with recording switched `on` or off, restoring the previous mode after. */
function withGradMode<T>(on: boolean, fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = on;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Runs fn without recording anything for autodiff (inference, optimizer updates). */
export const noGrad = <T>(fn: () => T): T => withGradMode(false, fn);

/** Whether ops are being recorded for autodiff now (false inside noGrad). */
export const isGradEnabled = (): boolean => gradEnabled;

/** Runs fn with recording on, even inside noGrad or a backward rule (torch.enable_grad). */
export const enableGrad = <T>(fn: () => T): T => withGradMode(true, fn);

/** The rule table of the backward pass running now: a rule that differentiates a graph of its own uses it. */
let activeRules: Record<string, Rule<never>> | null = null;

/**
 * Inside a backward rule: runs backward from `root` seeded with `seed` over the same rule table (gradient
 * checkpointing differentiates its recomputed block this way).
 */
export function nestedBackward(root: Tensor, seed: Tensor): void {
  if (!activeRules) throw new TensorError('nestedBackward: only a backward rule can run it');
  runBackward(activeRules, root, seed);
}

class Node implements GradNode {
  private refs = 1;
  private released = false;
  /** The nodes that produced the inputs, captured before inputs can be disposed. */
  readonly parents: readonly (GradNode | null)[];

  constructor(
    readonly op: string,
    readonly inputs: readonly (Tensor | null)[],
    readonly ctx: Record<string, unknown>,
    /** For each tensor in ctx, in ctx's order: the original's id and its version when the op saved it. */
    private readonly saved: readonly number[],
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

  checkVersions(): void {
    let at = 0;
    for (const [name, t] of Object.entries(this.ctx)) {
      if (!(t instanceof Tensor)) continue;
      const id = this.saved[at++];
      const version = this.saved[at++];
      if (t.version === version) continue;
      throw new TensorError(
        `backward: tensor #${id} ${fmtShape(t.shape)} ('${name}') was modified in place after op '${this.op}' saved it for backward; ` +
          `version ${t.version}, expected ${version} (write it after backward, or write into a copy)`,
      );
    }
  }

  get isReleased(): boolean {
    return this.released;
  }
}

/** Gradients for an op's inputs, in argument order (null where none flows). */
export type Grads = (Tensor | null)[];
/** A backward rule: upstream gradient, the op's saved context, which inputs need a gradient. */
export type Rule<C> = (g: Tensor, ctx: C, needs: readonly boolean[]) => Grads;
/** One rule per op of a context interface: an op without a rule is a compile error. */
export type Rules<Ctx> = { [K in keyof Ctx]: Rule<Ctx[K]> };

/**
 * A record function for the ops of one context interface: `recorder<MathOps>()('exp', [x], out, { y: out })`
 * type-checks the op name and its context. Recording is a no-op under noGrad or when no input requires grad;
 * tensor-valued context fields are replaced by aliases owned by the node (untracked by scopes), and their
 * versions noted so that backward can refuse one written in place since.
 */
export function recorder<Ctx>() {
  return <K extends keyof Ctx & string>(op: K, inputs: readonly (Tensor | null)[], out: Tensor, ctx: Ctx[K]): void => {
    if (!gradEnabled || !inputs.some((t) => t?.requiresGrad)) return;
    const saved: Record<string, unknown> = {};
    const versions: number[] = [];
    for (const [k, v] of Object.entries(ctx as Record<string, unknown>)) {
      if (v instanceof Tensor) versions.push(v.id, v.version);
      saved[k] = v instanceof Tensor ? keep(v.view(v.shape, v.strides)) : v;
    }
    out.requiresGrad = true;
    out.node = new Node(op, inputs, saved, versions);
  };
}

/** Marks a tensor as a trainable leaf: it requires grad and lives outside tidy scopes until disposed. */
export function param(t: Tensor): Tensor {
  if (t.dtype !== 'f32') throw new DTypeError(`param: only f32 tensors can require grad, got ${t.dtype}`);
  t.requiresGrad = true;
  return keep(t);
}

/** A view of t that autodiff treats as a constant. */
export function detach(t: Tensor): Tensor {
  return t.view(t.shape, t.strides);
}

/** Nodes reachable from root, parents before children. */
function topoOrder(root: GradNode): GradNode[] {
  const order: GradNode[] = [];
  const seen = new Set<GradNode>([root]);
  const stack: [GradNode, number][] = [[root, 0]];
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [node, i] = top;
    if (i < node.parents.length) {
      top[1]++;
      const p = node.parents[i];
      if (p && !seen.has(p)) {
        seen.add(p);
        stack.push([p, 0]);
      }
    } else {
      stack.pop();
      order.push(node);
    }
  }
  return order;
}

/** backward's options. */
export interface BackwardOptions {
  /** Keep saved tensors so backward can run through the same graph again. */
  retainGraph?: boolean;
}

/**
 * Accumulates d(root)/d(leaf) into leaf.grad for every leaf that requires grad, running `rules` (keyed by op
 * name) under noGrad. A non-scalar root needs an explicit seed gradient of its shape.
 */
export function runBackward(rules: Record<string, Rule<never>>, root: Tensor, seed?: Tensor, { retainGraph = false }: BackwardOptions = {}): void {
  root.bufferFor('backward');
  if (!root.requiresGrad) throw new TensorError(`backward: ${root} does not require grad (no input of its graph is a param)`);
  if (!seed && root.size !== 1) {
    throw new ShapeError(`backward: root has shape ${fmtShape(root.shape)}; pass a seed gradient of that shape for a non-scalar root`);
  }
  if (seed && !sameShape(seed.shape, root.shape)) throw new ShapeError(`backward: seed has shape ${fmtShape(seed.shape)}, root has ${fmtShape(root.shape)}`);
  const outerRules = activeRules;
  activeRules = rules;
  try {
    noGrad(() => backwardFrom(rules, root, seed, retainGraph));
  } finally {
    activeRules = outerRules;
  }
}

/** The backward pass proper (under noGrad): rules from the root's node back to the leaves. */
function backwardFrom(rules: Record<string, Rule<never>>, root: Tensor, seed: Tensor | undefined, retainGraph: boolean): void {
  const first = seed ? seed.view(seed.shape, seed.strides) : onesLike(root);
  if (!root.node) {
    accumulateLeaf(root, first);
    return;
  }
  const grads = new Map<GradNode, Tensor>([[root.node, first]]);
  const order = topoOrder(root.node);
  for (let k = order.length - 1; k >= 0; k--) {
    const node = order[k];
    const g = grads.get(node);
    if (!g) continue;
    grads.delete(node);
    if (node.isReleased) {
      throw new TensorError(`backward: the graph through '${node.op}' was already freed by an earlier backward (pass retainGraph: true to run it twice)`);
    }
    node.checkVersions();
    const rule = rules[node.op] as Rule<Record<string, unknown>> | undefined;
    if (!rule) throw new TensorError(`backward: op '${node.op}' has no backward rule`);
    const needs = node.inputs.map((t) => !!t?.requiresGrad);
    const inputGrads = tidy(() => rule(g, node.ctx, needs));
    node.inputs.forEach((input, i) => {
      const gi = inputGrads[i];
      if (!input || !needs[i] || !gi) return;
      if (!sameShape(gi.shape, input.shape)) {
        throw new TensorError(
          `backward: rule '${node.op}' returned a gradient of shape ${fmtShape(gi.shape)} for an input of shape ${fmtShape(input.shape)}`,
        );
      }
      const parent = node.parents[i];
      if (!parent) accumulateLeaf(input, gi);
      else {
        const prev = grads.get(parent);
        grads.set(parent, prev ? elementwise('add', [prev, gi]) : gi.view(gi.shape, gi.strides));
        prev?.dispose();
      }
    });
    for (const t of new Set([g, ...inputGrads])) t?.dispose();
    if (!retainGraph) node.releaseSaved();
  }
  for (const g of grads.values()) g.dispose();
}

function accumulateLeaf(leaf: Tensor, g: Tensor): void {
  if (!leaf.requiresGrad || leaf.isDisposed) return;
  const prev = leaf.grad;
  leaf.grad = keep(prev ? elementwise('add', [prev, g]) : g.isContiguous ? g.view(g.shape, g.strides) : elementwise('identity', [g]));
  prev?.dispose();
}
