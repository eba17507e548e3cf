// Your own kernel as a differentiable op. You write WGSL; it runs on the same machinery as the built-in ops —
// compiled once per op and dtypes into a pipeline whose bindings and uniform struct come from a generated spec,
// dispatched into the engine's shared command batch, outputs from the buffer pool, named in T.profile, f16
// storage through the bindings' element-type aliases — and the tape records it with the backward you give:
// composed ops, or another custom op (a second kernel). No built-in file changes for a new op.
//
// What the WGSL sees: the output `out` and each input as `array<name_t>` (name_t is the tensor's storage type:
// f32, f16 or i32), the uniform struct `u` with `u.n` (the output's element count), `u.<input>_offset` (where
// each input starts in its buffer) and your own scalars, and generated accessors that hide dtype and offset:
// `load_<input>(i)` returns element i of the input, row-major, as f32 (i32 for an i32 input), and
// `store(i, v)` writes element i of the output, rounding once when the output is f16. With `body`, your
// statements run once per output element with `i: u32` its index; with `wgsl`, you write the whole kernel
// (`fn main`, any workgroup size, workgroup memory, subgroups) and say how many workgroups to launch.
import { getEngine } from '../core/engine.ts';
import { DTypeError, TensorError } from '../core/errors.ts';
import type { DType } from '../core/dtype.ts';
import type { KernelSpec, StorageType } from '../core/kernel.ts';
import type { Shape } from '../core/shape.ts';
import { Tensor } from '../core/tensor.ts';
import { grid, perItemEntry } from '../kernels/wgsl.ts';
import { contiguous } from './movement.ts';
import { isGradEnabled, noGrad, recorder, type Grads, type Rules } from './tape.ts';

/** A scalar a custom kernel reads from its uniform struct as `u.<name>`. */
export type CustomUniformType = 'f32' | 'i32' | 'u32';

/** What a custom op's backward receives: its inputs by name and its output, as they were in the forward pass. */
export interface CustomSaved<I extends string> {
  inputs: Record<I, Tensor>;
  output: Tensor;
}

/** A custom op: its name, inputs, output, WGSL and (for autodiff) backward. */
export interface CustomOpSpec<I extends string> {
  /** Names the pipeline, the op in T.profile and in error messages. */
  name: string;
  /** The input tensors' names, as the WGSL binds them; the op is called with a tensor for each. */
  inputs: readonly I[];
  /** Your scalars, given at each call and read in WGSL as `u.<name>`. */
  uniforms?: Record<string, CustomUniformType>;
  /** The output's shape and dtype from the inputs (default: those of the first input). */
  output?: (inputs: Record<I, Tensor>) => { shape: Shape; dtype?: DType };
  /**
   * WGSL statements run once per output element, with `i: u32` its index (give this or `wgsl`). The output
   * starts as whatever its pooled buffer held: the kernel writes every element.
   */
  body?: string;
  /** WGSL placed before the kernel: helper functions and constants for `body`. */
  prelude?: string;
  /** A whole WGSL kernel with its `fn main` (give this or `body`); `workgroups` says how many to launch. */
  wgsl?: string;
  /** With `wgsl`: the workgroup grid for an output of `n` elements. */
  workgroups?: (n: number, inputs: Record<I, Tensor>) => readonly [number, number?, number?];
  /**
   * The gradient of each input from the output's gradient `grad` (composed ops, or another custom op); null or
   * missing for an input that gets none. Without it the op is not differentiable: calling it on a tensor that
   * requires grad, outside noGrad, is an error. The inputs and the output are kept for it until backward.
   */
  backward?: (grad: Tensor, saved: CustomSaved<I>) => Partial<Record<I, Tensor | null>>;
}

/** The op customOp makes: called with a tensor per input and a value per uniform; returns the new output. */
export type CustomOp<I extends string> = (inputs: Record<I, Tensor>, uniforms?: Record<string, number>) => Tensor;

/** What the tape keeps for a custom op: how to run its backward, the output and each input (`input0` …). */
export interface CustomOps {
  custom: { name: string; run: (grad: Tensor, ctx: Record<string, unknown>, needs: readonly boolean[]) => Grads } & Record<string, unknown>;
}
const recordOp = recorder<CustomOps>();

/** The tape's rule for every custom op: the op's own backward, which the recorded context carries. */
export const customRules: Rules<CustomOps> = {
  custom: (g, ctx, needs) => ctx.run(g, ctx, needs),
};

const WORKGROUP = 64;
const STORAGE: Record<DType, StorageType> = { f32: 'f32', f16: 'f16', i32: 'i32' };
let nextOpId = 1;

/**
 * Makes a differentiable op from a WGSL kernel. Each op made is compiled once per combination of input and
 * output dtypes (one WGSL source serves f32 and f16 storage through the generated accessors): make it once (a
 * module-level constant) and call it many times. A WGSL mistake surfaces as a GpuError naming the op at the
 * next readback or sync; CLIPGPU_DUMP_WGSL=<dir> writes the generated shader with the line numbers it cites.
 *
 * ```ts
 * const square = T.customOp({
 *   name: 'square', inputs: ['x'], body: 'let v = load_x(i); store(i, v * v);',
 *   backward: (g, { inputs: { x } }) => ({ x: T.mul(g, T.mul(x, 2)) }),
 * });
 * const y = square({ x });
 * ```
 */
export function customOp<const I extends string>(spec: CustomOpSpec<I>): CustomOp<I> {
  const id = nextOpId++;
  if (!spec.name) throw new TypeError('customOp: a name is required');
  if ((spec.body === undefined) === (spec.wgsl === undefined)) throw new TypeError(`customOp '${spec.name}': give either body or wgsl`);
  if (spec.wgsl !== undefined && !spec.workgroups) throw new TypeError(`customOp '${spec.name}': a whole-kernel wgsl needs workgroups`);
  if (spec.inputs.length === 0 && !spec.output) throw new TypeError(`customOp '${spec.name}': an op without inputs needs output (its shape)`);
  const own = Object.keys(spec.uniforms ?? {});
  const generated = new Set(['n', ...spec.inputs.map((name) => `${name}_offset`)]);
  const clash = own.find((name) => generated.has(name)) ?? spec.inputs.find((name) => name === 'out' || name === 'u');
  if (clash) throw new TypeError(`customOp '${spec.name}': the name '${clash}' is taken by the generated bindings`);

  return (inputs, uniforms = {}) => {
    const tensors = spec.inputs.map((name) => {
      const t = inputs[name];
      if (!(t instanceof Tensor)) throw new TypeError(`${spec.name}: input '${name}' is not a tensor`);
      t.bufferFor(spec.name);
      return t;
    });
    const missing = own.find((name) => typeof uniforms[name] !== 'number');
    if (missing) throw new TypeError(`${spec.name}: uniform '${missing}' was not given a number`);
    const needsGrad = isGradEnabled() && tensors.some((t) => t.requiresGrad);
    if (needsGrad && !spec.backward) {
      throw new TensorError(`${spec.name}: an input requires grad and this custom op has no backward (give one, or call it under noGrad)`);
    }
    // The kernel indexes each input as a flat row-major array from its offset: strided views are copied first.
    const flat = tensors.map((t) => (t.isContiguous ? t : noGrad(() => contiguous(t))));
    const described = spec.output?.(inputs) ?? { shape: tensors[0].shape, dtype: tensors[0].dtype };
    const dtype = described.dtype ?? tensors[0].dtype;
    if (dtype === 'i32' && spec.backward) throw new DTypeError(`${spec.name}: an i32 output has no gradient; drop backward or output a float`);
    const out = Tensor.empty(described.shape, dtype);
    const n = out.size;
    if (n > 0) {
      const dtypes = flat.map((t) => t.dtype);
      const engine = getEngine();
      const kernel = engine.kernel(`custom${id}:${spec.name}:${dtypes.join(',')}>${dtype}`, () => kernelSpec(spec, dtypes, dtype));
      const buffers: Record<string, GPUBuffer> = { out: out.bufferFor(spec.name) };
      const values: Record<string, number> = { n, ...uniforms };
      spec.inputs.forEach((name, k) => {
        buffers[name] = flat[k].bufferFor(spec.name);
        values[`${name}_offset`] = flat[k].offset;
      });
      const workgroups = spec.workgroups?.(n, inputs) ?? grid(Math.ceil(n / WORKGROUP));
      engine.dispatch(kernel, buffers, values, workgroups);
    }
    flat.forEach((t, k) => t !== tensors[k] && t.dispose());
    if (needsGrad) {
      const saved: Record<string, Tensor> = Object.fromEntries(tensors.map((t, k) => [`input${k}`, t]));
      const run = (grad: Tensor, ctx: Record<string, unknown>, needs: readonly boolean[]): Grads => {
        const byName = Object.fromEntries(spec.inputs.map((name, k) => [name, ctx[`input${k}`] as Tensor])) as Record<I, Tensor>;
        const grads = spec.backward!(grad, { inputs: byName, output: ctx.output as Tensor });
        return spec.inputs.map((name, k) => (needs[k] ? (grads[name] ?? null) : null));
      };
      recordOp('custom', tensors, out, { name: spec.name, run, output: out, ...saved });
    }
    return out;
  };
}

/** The WGSL and bindings of a custom op for these input and output dtypes. */
function kernelSpec<I extends string>(spec: CustomOpSpec<I>, dtypes: readonly DType[], outDtype: DType): KernelSpec {
  const value = (dt: DType) => (dt === 'i32' ? 'i32' : 'f32');
  const accessors = [
    ...spec.inputs.map((name, k) => `fn load_${name}(i: u32) -> ${value(dtypes[k])} { return ${value(dtypes[k])}(${name}[u.${name}_offset + i]); }`),
    `fn store(i: u32, v: ${value(outDtype)}) { out[i] = out_t(v); }`,
  ];
  const kernel = spec.wgsl ?? `${spec.prelude ?? ''}\n${perItemEntry(WORKGROUP, 'i')}\n  if (i >= u.n) { return; }\n${spec.body}\n}`;
  return {
    name: spec.name,
    outputs: { out: STORAGE[outDtype] },
    inputs: Object.fromEntries(spec.inputs.map((name, k) => [name, STORAGE[dtypes[k]]])),
    uniforms: { n: 'u32', ...Object.fromEntries(spec.inputs.map((name) => [`${name}_offset`, 'u32'])), ...(spec.uniforms ?? {}) },
    wgsl: `${accessors.join('\n')}\n${kernel}`,
  };
}
