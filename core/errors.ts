// Error classes. Every message names the op, tensor, file or key involved and what was expected vs. found.

/** The base of the errors an op raises for a user's mistake; the message names the op, the tensors and what was expected. */
export class TensorError extends Error {
  override name = 'TensorError';
}
/** Shapes that do not fit the op (mismatch, bad axis, bad reshape). */
export class ShapeError extends TensorError {
  override name = 'ShapeError';
}
/** A tensor of the wrong dtype for the op. */
export class DTypeError extends TensorError {
  override name = 'DTypeError';
}
/** An index outside the axis it indexes. */
export class IndexError extends TensorError {
  override name = 'IndexError';
}
/** A tensor used after dispose(). */
export class DisposedError extends TensorError {
  override name = 'DisposedError';
}
/**
 * A captured step cannot be replayed (core/capture.ts): it read GPU data back while recording, or two recordings
 * of it differ. The message says where.
 */
export class CaptureError extends TensorError {
  override name = 'CaptureError';
}
/** A WebGPU failure: no adapter, a validation error reported by Dawn, or a lost device. */
export class GpuError extends Error {
  override name = 'GpuError';
}

export const fmtShape = (shape: readonly number[]): string => `[${shape.join(', ')}]`;
