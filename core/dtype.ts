// Element types: f32 and i32 (4 bytes), and f16 (2 bytes; device memory only — on the host its values are
// Float32Array numbers, converted on upload and download; kernels that use it need the shader-f16 feature).

/** A tensor's element type: f32, i32, or f16 (on devices with shader-f16; computed in f32, stored in half). */
export type DType = 'f32' | 'i32' | 'f16';
export type TypedArray = Float32Array | Int32Array;
export type ArrayFor<D extends DType> = D extends 'i32' ? Int32Array : Float32Array;

/** Bytes one element takes in device memory. */
export const bytesPerElement = (dtype: DType): number => (dtype === 'f16' ? 2 : 4);

export function makeArray<D extends DType>(dtype: D, size: number): ArrayFor<D> {
  return (dtype === 'i32' ? new Int32Array(size) : new Float32Array(size)) as ArrayFor<D>;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE binary16 bits of a number, rounded to nearest even (overflow → ±Infinity, NaN stays NaN). */
export function toHalfBits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf or NaN
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // too large: Inf
  if (e <= 0) {
    // Subnormal half (or zero): shift the implicit-1 mantissa into place, rounding to nearest even.
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    const half = m >>> shift;
    const rest = m & ((1 << shift) - 1);
    const midpoint = 1 << (shift - 1);
    return sign | (half + (rest > midpoint || (rest === midpoint && half & 1) ? 1 : 0));
  }
  const half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // Rounding may carry into the exponent (and up to Inf), which the bit layout makes correct.
  return sign | (half + (rest > 0x1000 || (rest === 0x1000 && half & 1) ? 1 : 0));
}

/** The number a binary16 bit pattern holds. */
export function fromHalfBits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return sign * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : sign * Infinity;
  return sign * 2 ** (e - 15) * (1 + f / 1024);
}
