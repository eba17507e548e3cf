// Parameter initialisation, as torch.nn.init: seeded, on the GPU, written in place under noGrad.
import * as T from '../ops/index.ts';

/** Which fan kaiming initialisation preserves the variance of: inputs (forward) or outputs (backward). */
export type FanMode = 'fanIn' | 'fanOut';

/** fan_in and fan_out as PyTorch computes them: [out, in, ...receptive field]. */
export function fans(shape: readonly number[]): { fanIn: number; fanOut: number } {
  if (shape.length < 2) throw new RangeError(`init: fan in/out need at least 2 dimensions, got [${shape.join(', ')}]`);
  const receptive = shape.slice(2).reduce((a, b) => a * b, 1);
  return { fanIn: shape[1] * receptive, fanOut: shape[0] * receptive };
}

function write(t: T.Tensor, make: () => T.Tensor): T.Tensor {
  T.noGrad(() => T.tidy(() => T.assign(t, make())));
  return t;
}

/** Fills t in place with N(mean, std²) draws (torch.nn.init.normal_); returns t. */
export const normal = (t: T.Tensor, mean = 0, std = 1, gen?: T.Generator): T.Tensor => write(t, () => T.randNormal(t.shape, mean, std, gen));
/** Fills t in place with U(low, high) draws (torch.nn.init.uniform_); returns t. */
export const uniform = (t: T.Tensor, low = 0, high = 1, gen?: T.Generator): T.Tensor => write(t, () => T.randUniform(t.shape, low, high, gen));
/** Fills t in place with `value`; returns t. */
export const constant = (t: T.Tensor, value: number): T.Tensor => write(t, () => T.fill(t.shape, value));
/** Fills t in place with zeros; returns t. */
export const zeros = (t: T.Tensor): T.Tensor => constant(t, 0);
/** Fills t in place with ones; returns t. */
export const ones = (t: T.Tensor): T.Tensor => constant(t, 1);

/** Gain for a nonlinearity; for leaky_relu, `a` is the negative slope (PyTorch's calculate_gain). */
export function gain(nonlinearity: 'linear' | 'relu' | 'leaky_relu' | 'tanh' | 'sigmoid', a = 0.01): number {
  switch (nonlinearity) {
    case 'relu':
      return Math.SQRT2;
    case 'leaky_relu':
      return Math.sqrt(2 / (1 + a * a));
    case 'tanh':
      return 5 / 3;
    default:
      return 1;
  }
}

/** kaimingUniform's options: the negative slope `a`, the fan mode and the nonlinearity (PyTorch's defaults). */
export interface KaimingOptions {
  a?: number;
  mode?: FanMode;
  nonlinearity?: 'relu' | 'leaky_relu' | 'linear';
}

/** He initialisation, U(−b, b) with b = gain·√(3 / fan) (torch.nn.init.kaiming_uniform_); returns t. */
export function kaimingUniform(t: T.Tensor, { a = 0, mode = 'fanIn', nonlinearity = 'leaky_relu' }: KaimingOptions = {}, gen?: T.Generator): T.Tensor {
  const bound = gain(nonlinearity, a) * Math.sqrt(3 / fans(t.shape)[mode]);
  return uniform(t, -bound, bound, gen);
}

/** Glorot initialisation, U(−b, b) with b = g·√(6 / (fanIn + fanOut)) (torch.nn.init.xavier_uniform_); returns t. */
export function xavierUniform(t: T.Tensor, g = 1, gen?: T.Generator): T.Tensor {
  const { fanIn, fanOut } = fans(t.shape);
  const bound = g * Math.sqrt(6 / (fanIn + fanOut));
  return uniform(t, -bound, bound, gen);
}
