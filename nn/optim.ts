// Optimizers with torch.optim's update formulas, parameter groups and state dicts; gradient clipping by
// global norm; learning-rate schedules as functions of the step.
import * as T from '../ops/index.ts';
import { adamwMultiUpdate, adamwUpdate, multiTensorLimit, sgdUpdate, type AdamWItem } from '../kernels/optimizer.ts';

/** Hyperparameters a parameter group may override (the rest come from the optimizer's defaults). */
export interface GroupOptions {
  lr?: number;
  weightDecay?: number;
}

/** A group of parameters with its own hyperparameters (as torch.optim's param_groups). */
export interface ParamGroup<H> {
  params: T.Tensor[];
  /** Hyperparameters of this group (the optimizer's defaults overridden by the group's own). */
  options: H;
}

/** A parameter group as passed to an optimizer: its parameters and the options it overrides. */
export interface GroupSpec<H> {
  params: T.Tensor[];
  options?: Partial<H>;
}

/** Per-parameter state tensors, saved under `state.<index>.<name>` in the state dict. */
type State = Record<string, T.Tensor>;

abstract class Optimizer<H extends { lr: number }> {
  readonly groups: ParamGroup<H>[];
  protected readonly state = new Map<T.Tensor, State>();
  stepCount = 0;

  constructor(params: T.Tensor[] | GroupSpec<H>[], defaults: H) {
    const groups = params.length && params[0] instanceof T.Tensor ? [{ params: params as T.Tensor[] }] : (params as GroupSpec<H>[]);
    this.groups = groups.map((g) => ({ params: g.params, options: { ...defaults, ...(g as GroupSpec<H>).options } }));
  }

  /** Sets the learning rate of every group (schedules call this each step). */
  setLr(lr: number): void {
    for (const g of this.groups) g.options.lr = lr;
  }

  /** Applies one update to every parameter that has a gradient. */
  step(): void {
    this.stepCount++;
    // A captured training step (core/capture.ts) replays the updates without calling step(): it counts here.
    T.onReplay(() => this.stepCount++);
    T.noGrad(() => {
      for (const group of this.groups) this.stepGroup(group);
    });
  }

  /** The update of one group: per parameter with a gradient, unless an optimizer batches them. */
  protected stepGroup(group: ParamGroup<H>): void {
    for (const p of group.params) if (p.grad) this.update(p, p.grad, group.options);
  }

  protected abstract update(p: T.Tensor, g: T.Tensor, h: H): void;

  protected stateOf(p: T.Tensor, names: string[]): State {
    let s = this.state.get(p);
    if (!s) {
      s = Object.fromEntries(names.map((n) => [n, T.keep(T.zerosLike(p))]));
      this.state.set(p, s);
    }
    return s;
  }

  /** Sets every parameter's gradient to null (PyTorch's zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    for (const g of this.groups) for (const p of g.params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  private allParams(): T.Tensor[] {
    return this.groups.flatMap((g) => g.params);
  }

  /** State tensors keyed `state.<param index>.<name>` (the tensors themselves), plus the step count. */
  stateDict(): { step: number; tensors: Map<string, T.Tensor> } {
    const tensors = new Map<string, T.Tensor>();
    this.allParams().forEach((p, i) => {
      for (const [name, t] of Object.entries(this.state.get(p) ?? {})) tensors.set(`state.${i}.${name}`, t);
    });
    return { step: this.stepCount, tensors };
  }

  /** Restores what stateDict() returned (tensors are copied into fresh state). */
  loadStateDict({ step, tensors }: { step: number; tensors: Map<string, T.Tensor> }): void {
    const params = this.allParams();
    for (const [key, t] of tensors) {
      const m = /^state\.(\d+)\.(\w+)$/.exec(key);
      const p = m ? params[Number(m[1])] : undefined;
      if (!m || !p) throw new RangeError(`optimizer.loadStateDict: unexpected key ${key} (${params.length} parameters)`);
      if (t.shape.join() !== p.shape.join()) throw new RangeError(`optimizer.loadStateDict: ${key} has shape [${t.shape}], parameter ${m[1]} has [${p.shape}]`);
      this.loadState(p, m[2], t);
    }
    this.stepCount = step;
  }

  /** Sets state `name` of `p` to a copy of `t` (loadStateDict). */
  protected loadState(p: T.Tensor, name: string, t: T.Tensor): void {
    const s = this.state.get(p) ?? {};
    s[name]?.dispose();
    s[name] = T.keep(T.noGrad(() => T.contiguous(T.add(t, 0))));
    this.state.set(p, s);
  }

  /** Frees the optimizer's state tensors (moments, momentum buffers). */
  dispose(): void {
    for (const s of this.state.values()) for (const t of Object.values(s)) t.dispose();
    this.state.clear();
  }
}

/** Where a group's AdamW moments live: flat chunks, each within one binding, and each parameter's place in them. */
interface FlatMoments {
  chunks: { m: T.Tensor; v: T.Tensor }[];
  place: Map<T.Tensor, { chunk: number; at: number }>;
}

/** AdamW's hyperparameters: learning rate, β1, β2, ε and decoupled weight decay. */
export interface AdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** AdamW (Loshchilov & Hutter), as torch.optim.AdamW; defaults are PyTorch's. */
export class AdamW extends Optimizer<AdamWOptions> {
  constructor(params: T.Tensor[] | GroupSpec<AdamWOptions>[], options: Partial<AdamWOptions> = {}) {
    super(params, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-2, ...options });
  }
  /** Per group, the flat moments the multi-tensor update reads (made at the group's first step or load). */
  private flat = new Map<ParamGroup<AdamWOptions>, FlatMoments>();

  protected update(p: T.Tensor, g: T.Tensor, h: AdamWOptions): void {
    const { exp_avg, exp_avg_sq } = this.stateOf(p, ['exp_avg', 'exp_avg_sq']);
    // The learning rate (set by schedules) and the step are read when the update is issued, and again at every
    // replay of a captured step.
    adamwUpdate(p, g, exp_avg, exp_avg_sq, { ...h, lr: () => h.lr, step: () => this.stepCount });
    for (const t of [p, exp_avg, exp_avg_sq]) t.bumpVersion();
  }

  /**
   * The group's parameters updated several per dispatch (kernels/optimizer.ts adamwMultiUpdate): a step of a
   * model with hundreds of parameter tensors is tens of dispatches, not hundreds — on a GPU bound by launches and
   * host time, the difference shows. The moments of the group's f32 contiguous parameters live in flat chunks
   * (each `exp_avg`/`exp_avg_sq` in the state dict is a view of them); other parameters take the per-tensor path.
   */
  protected override stepGroup(group: ParamGroup<AdamWOptions>): void {
    const h = group.options;
    const hyper = { ...h, lr: () => h.lr, step: () => this.stepCount };
    const flat = this.flatMoments(group);
    const limit = multiTensorLimit();
    // Batched by chunk and by whether a tensor can take the vec4 kernel (one scalar-only tensor would make its
    // whole dispatch scalar).
    const batches = new Map<string, { chunk: number; items: AdamWItem[]; params: Set<GPUBuffer> }[]>();
    for (const p of group.params) {
      if (!p.grad) continue;
      const place = flat.place.get(p);
      if (!place || !p.grad.isContiguous || p.grad.dtype !== 'f32') {
        this.update(p, p.grad, h);
        continue;
      }
      this.momentsOf(p, flat);
      const key = `${place.chunk}:${p.size % 4 === 0 && p.offset % 4 === 0 && p.grad.offset % 4 === 0}`;
      const list = batches.get(key) ?? [];
      batches.set(key, list);
      const buffer = p.bufferFor('adamw');
      // Two writable bindings of one buffer in a dispatch are not allowed: parameters sharing storage go apart.
      let batch = list.find((b) => b.items.length < limit && !b.params.has(buffer));
      if (!batch) list.push((batch = { chunk: place.chunk, items: [], params: new Set() }));
      batch.items.push({ p, g: p.grad, at: place.at });
      batch.params.add(buffer);
    }
    for (const { chunk, items } of [...batches.values()].flat()) {
      const { m, v } = flat.chunks[chunk];
      adamwMultiUpdate(items, m, v, hyper);
      for (const t of [...items.map((item) => item.p), m, v]) t.bumpVersion();
    }
  }

  /** The group's flat moments, made once: chunks of at most one binding's size, every parameter's place 4-aligned. */
  private flatMoments(group: ParamGroup<AdamWOptions>): FlatMoments {
    let flat = this.flat.get(group);
    if (flat) return flat;
    // A power of two of bytes: the pool rounds a buffer's size up to its bucket, which must still fit a binding.
    const maxElements = 2 ** Math.floor(Math.log2(T.gpu().device.limits.maxStorageBufferBindingSize)) / 4;
    const sizes: number[] = [];
    const place = new Map<T.Tensor, { chunk: number; at: number }>();
    for (const p of group.params) {
      if (p.dtype !== 'f32' || !p.isContiguous || p.size === 0 || place.has(p)) continue;
      const aligned = Math.ceil(p.size / 4) * 4;
      if (aligned > maxElements) continue; // one tensor over a binding: the per-tensor path (which fails as it would)
      if (!sizes.length || sizes[sizes.length - 1] + aligned > maxElements) sizes.push(0);
      place.set(p, { chunk: sizes.length - 1, at: sizes[sizes.length - 1] });
      sizes[sizes.length - 1] += aligned;
    }
    const chunks = sizes.map((n) => ({ m: T.keep(T.zeros([n])), v: T.keep(T.zeros([n])) }));
    this.flat.set(group, (flat = { chunks, place }));
    return flat;
  }

  /** p's exp_avg and exp_avg_sq as views of the flat moments (made on its first update or load, as PyTorch's state). */
  private momentsOf(p: T.Tensor, flat: FlatMoments): State {
    let s = this.state.get(p);
    if (!s) {
      const { chunk, at } = flat.place.get(p)!;
      const { m, v } = flat.chunks[chunk];
      const view = (t: T.Tensor) => T.keep(t.view(p.shape, undefined, at));
      s = { exp_avg: view(m), exp_avg_sq: view(v) };
      this.state.set(p, s);
    }
    return s;
  }

  protected override loadState(p: T.Tensor, name: string, t: T.Tensor): void {
    const group = this.groups.find((g) => g.params.includes(p))!;
    const flat = this.flatMoments(group);
    if (!flat.place.has(p) || (name !== 'exp_avg' && name !== 'exp_avg_sq')) return super.loadState(p, name, t);
    T.noGrad(() => T.assign(this.momentsOf(p, flat)[name], t));
  }

  override dispose(): void {
    super.dispose();
    for (const { chunks } of this.flat.values()) for (const { m, v } of chunks) (m.dispose(), v.dispose());
    this.flat.clear();
  }
}

/** SGD's hyperparameters: learning rate, momentum, dampening, (coupled) weight decay and Nesterov. */
export interface SGDOptions {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
}

/** SGD with optional momentum, dampening, Nesterov and (coupled) weight decay, as torch.optim.SGD. */
export class SGD extends Optimizer<SGDOptions> {
  constructor(params: T.Tensor[] | GroupSpec<SGDOptions>[], options: Partial<SGDOptions> & { lr: number }) {
    super(params, { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, ...options });
  }
  protected update(p: T.Tensor, g: T.Tensor, h: SGDOptions): void {
    const first = !this.state.has(p);
    const { momentum_buffer } = this.stateOf(p, ['momentum_buffer']);
    sgdUpdate(p, g, momentum_buffer, { ...h, lr: () => h.lr, first });
    for (const t of [p, momentum_buffer]) t.bumpVersion();
  }
}

/**
 * Scales every gradient by min(1, maxNorm / (‖g‖ + 1e-6)) where ‖g‖ is the global L2 norm over all of them
 * (torch.nn.utils.clip_grad_norm_). Runs on the GPU without a readback; returns the norm as a scalar tensor.
 */
export function clipGradNorm(params: T.Tensor[], maxNorm: number): T.Tensor {
  return T.noGrad(() => {
    const grads = params.map((p) => p.grad).filter((g): g is T.Tensor => g !== null);
    if (grads.length === 0) return T.zeros([]);
    const norm = T.tidy(() => T.sqrt(T.sum(T.stack(grads.map((g) => T.sum(T.mul(g, g)))))));
    T.tidy(() => {
      const scale = T.clamp(T.div(maxNorm, T.add(norm, 1e-6)), 0, 1);
      for (const g of grads) T.assign(g, T.mul(g, scale));
    });
    return norm;
  });
}

/**
 * Splits parameters for weight decay on weight matrices only: gains, biases, norms, positional and class
 * embeddings and the logit scale are excluded (open_clip's rule: fewer than 2 dimensions, or a name containing
 * bn / ln / bias / logit_scale; plus the embeddings' positional terms).
 */
export function decayGroups(
  named: [string, T.Tensor][],
  exclude: (name: string, p: T.Tensor) => boolean = (name, p) => p.rank < 2 || /bn|ln|bias|logit_scale|positional_embedding|class_embedding/.test(name),
) {
  return {
    decay: named.filter(([n, p]) => !exclude(n, p)).map(([, p]) => p),
    noDecay: named.filter(([n, p]) => exclude(n, p)).map(([, p]) => p),
  };
}

/** Linear warmup over `warmup` steps, then cosine decay to `minLr` at `total` (open_clip's cosine_lr). */
export function cosineWithWarmup(
  { baseLr, warmup, total, minLr = 0 }: { baseLr: number; warmup: number; total: number; minLr?: number },
): (step: number) => number {
  return (step) => {
    if (step < warmup) return (baseLr * (step + 1)) / warmup;
    const progress = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
    return minLr + 0.5 * (1 + Math.cos(Math.PI * progress)) * (baseLr - minLr);
  };
}

/** Linear warmup, then constant. */
export function constantWithWarmup({ baseLr, warmup }: { baseLr: number; warmup: number }): (step: number) => number {
  return (step) => (step < warmup ? (baseLr * (step + 1)) / warmup : baseLr);
}
