// Module: named parameters, buffers and child modules, so that names equal PyTorch state-dict keys
// (`visual.transformer.resblocks.0.attn.in_proj_weight`) and loading a checkpoint is a walk over names.
import * as T from '../ops/index.ts';

/** A state dict that does not fit a module: the missing, unexpected and mis-shaped keys by name. */
export class StateDictError extends Error {
  override name = 'StateDictError';
}

/** Parameters and buffers by their PyTorch key (`visual.conv1.weight`). */
export type StateDict = Map<string, T.Tensor>;

/** A model part with named parameters, buffers and child modules, as torch.nn.Module: keys equal checkpoint keys. */
export class Module {
  private readonly params = new Map<string, T.Tensor>();
  private readonly buffers = new Map<string, T.Tensor>();
  private readonly children = new Map<string, Module>();
  training = true;

  /** Registers a trainable parameter under `name` (a leaf that requires grad) and returns it. */
  protected param(name: string, value: T.Tensor): T.Tensor {
    this.params.set(name, T.param(value));
    return value;
  }

  /** Registers a non-trainable tensor saved in the state dict (e.g. running statistics). */
  protected buffer(name: string, value: T.Tensor): T.Tensor {
    this.buffers.set(name, T.keep(value));
    return value;
  }

  /** Registers a child module under `name`. */
  protected child<M extends Module>(name: string, module: M): M {
    this.children.set(name, module);
    return module;
  }

  /** [key, tensor] for every parameter, own first, then each child's under its prefix (PyTorch's order). */
  namedParameters(prefix = ''): [string, T.Tensor][] {
    const own = [...this.params].map(([k, v]): [string, T.Tensor] => [prefix + k, v]);
    return [...own, ...[...this.children].flatMap(([name, m]) => m.namedParameters(`${prefix}${name}.`))];
  }

  /** Every parameter, in namedParameters' order (what an optimizer takes). */
  parameters(): T.Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }

  /** [key, buffer] for every buffer (non-trainable state such as running statistics), in PyTorch's order. */
  namedBuffers(prefix = ''): [string, T.Tensor][] {
    const own = [...this.buffers].map(([k, v]): [string, T.Tensor] => [prefix + k, v]);
    return [...own, ...[...this.children].flatMap(([name, m]) => m.namedBuffers(`${prefix}${name}.`))];
  }

  /** [key, module] for this module (key '') and every descendant. */
  namedModules(prefix = ''): [string, Module][] {
    return [[prefix.replace(/\.$/, ''), this], ...[...this.children].flatMap(([name, m]) => m.namedModules(`${prefix}${name}.`))];
  }

  /** Parameters and buffers by key. The tensors are the module's own (not copies). */
  stateDict(): StateDict {
    return new Map([...this.namedParameters(), ...this.namedBuffers()]);
  }

  /**
   * Copies tensors into the module's parameters and buffers by key. Shape mismatches always fail; with
   * `strict` (the default) so do missing and unexpected keys. Every problem is listed in one error.
   */
  loadStateDict(source: StateDict | Record<string, T.Tensor>, { strict = true } = {}): { missing: string[]; unexpected: string[] } {
    const entries = source instanceof Map ? source : new Map(Object.entries(source));
    const own = this.stateDict();
    const missing = [...own.keys()].filter((k) => !entries.has(k));
    const unexpected = [...entries.keys()].filter((k) => !own.has(k));
    const mismatched = [...entries]
      .filter(([k, v]) => own.has(k) && own.get(k)!.shape.join() !== v.shape.join())
      .map(([k, v]) => `${k}: checkpoint [${v.shape.join(', ')}] vs model [${own.get(k)!.shape.join(', ')}]`);
    // The first few of each kind say what is wrong; hundreds of keys would bury it.
    const some = (items: string[], sep: string) => (items.length <= 3 ? items.join(sep) : `${items.slice(0, 3).join(sep)}${sep}and ${items.length - 3} more`);
    const problems = [
      ...(strict && missing.length ? [`${missing.length} missing keys: ${some(missing, ', ')}`] : []),
      ...(strict && unexpected.length ? [`${unexpected.length} unexpected keys: ${some(unexpected, ', ')}`] : []),
      ...(mismatched.length ? [`${mismatched.length} shape mismatches: ${some(mismatched, '; ')}`] : []),
    ];
    if (problems.length) throw new StateDictError(`loadStateDict(${this.constructor.name}): ${problems.join('. ')}`);
    T.noGrad(() => {
      for (const [k, v] of entries) {
        const dst = own.get(k);
        if (!dst) continue;
        if (v.dtype !== dst.dtype) throw new StateDictError(`loadStateDict: ${k} is ${v.dtype} in the checkpoint but ${dst.dtype} in the model`);
        T.assign(dst, v);
      }
    });
    return { missing, unexpected };
  }

  /**
   * Converts parameters in place to `dtype` (PyTorch's module.half() / .float()), those for which `which` says
   * so. f16 parameters are for inference: they stop requiring grad (training keeps f32 master weights and
   * computes in f16 under autocast, nn/precision.ts); converted back to f32 they require it again.
   */
  convertParameters(dtype: 'f32' | 'f16', which: (name: string) => boolean = () => true): this {
    T.noGrad(() => {
      for (const [name, p] of this.namedParameters()) {
        if (p.dtype === dtype || !which(name)) continue;
        p.adopt(T.cast(p, dtype));
        p.requiresGrad = dtype === 'f32';
        p.grad?.dispose();
        p.grad = null;
      }
    });
    return this;
  }

  /** Training mode (batch statistics, dropout) for this module and its children. */
  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  /** Evaluation mode (running statistics, no dropout) for this module and its children; `train(false)`. */
  eval(): this {
    return this.train(false);
  }

  /** Sets every parameter's gradient to null (PyTorch's zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    for (const p of this.parameters()) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /** Frees every parameter and buffer. */
  dispose(): void {
    for (const t of this.stateDict().values()) t.dispose();
  }
}
