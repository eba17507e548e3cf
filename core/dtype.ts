// Element types. Everything is 4 bytes wide today; f16 would add a storage type and a widening load.

export type DType = 'f32' | 'i32';
export type TypedArray = Float32Array | Int32Array;
export type ArrayFor<D extends DType> = D extends 'f32' ? Float32Array : Int32Array;

export const BYTES_PER_ELEMENT = 4;

export function makeArray<D extends DType>(dtype: D, size: number): ArrayFor<D> {
  return (dtype === 'f32' ? new Float32Array(size) : new Int32Array(size)) as ArrayFor<D>;
}
