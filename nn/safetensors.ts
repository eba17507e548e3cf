// safetensors: an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}} with
// optional "__metadata__" (string → string), then the raw little-endian data.
// Reading validates everything before trusting it (sizes, offsets inside the file, no overlaps, known dtype,
// shape × dtype = byte length) and converts F32/F16/BF16/F64 to f32 and I64/I32/I16/I8/U8/BOOL to i32.
// Bytes in, bytes out: nn/io/safetensors.ts reads and writes files (atomically) around this module.
import { fromHalfBits, toHalfBits } from '../core/dtype.ts';
import * as T from '../ops/index.ts';

/** A safetensors file that cannot be read: names the file and what is wrong in it. */
export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

/** Bytes per element of each safetensors dtype. */
export const DTYPE_BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
const MAX_HEADER = 100 * 1024 * 1024;

/** A tensor read from a file into host memory (before it goes to the GPU). */
export interface HostTensor {
  dtype: 'f32' | 'i32';
  shape: number[];
  data: Float32Array | Int32Array;
  /** The dtype stored in the file. */
  fileDtype: string;
}

/** A parsed safetensors file: its tensors by name and its string metadata. */
export interface SafetensorsFile {
  tensors: Map<string, HostTensor>;
  metadata: Record<string, string>;
}

/** `count` little-endian values of a safetensors dtype (`name` names them in errors) as f32 or i32 host data. */
export function decodeHostData(name: string, dtype: string, bytes: Uint8Array, count: number): Float32Array | Int32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'F32': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
      return out;
    }
    case 'F64':
      return Float32Array.from({ length: count }, (_, i) => view.getFloat64(8 * i, true));
    case 'F16':
      return Float32Array.from({ length: count }, (_, i) => fromHalfBits(view.getUint16(2 * i, true)));
    case 'BF16': {
      const out = new Float32Array(count);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) bits[i] = view.getUint16(2 * i, true) << 16;
      return out;
    }
    case 'I64':
      return Int32Array.from({ length: count }, (_, i) => {
        const v = view.getBigInt64(8 * i, true);
        if (v > 2147483647n || v < -2147483648n) throw new SafetensorsError(`${name}: I64 value ${v} at index ${i} does not fit in i32`);
        return Number(v);
      });
    case 'I32':
      return Int32Array.from({ length: count }, (_, i) => view.getInt32(4 * i, true));
    case 'I16':
      return Int32Array.from({ length: count }, (_, i) => view.getInt16(2 * i, true));
    case 'I8':
      return Int32Array.from({ length: count }, (_, i) => view.getInt8(i));
    default: // U8, BOOL
      return Int32Array.from(bytes.subarray(0, count));
  }
}

/** Parses and validates a safetensors buffer; `source` names it in errors. */
export function parseSafetensors(buf: Uint8Array, source = 'buffer'): SafetensorsFile {
  const fail = (msg: string): never => {
    throw new SafetensorsError(`${source}: ${msg}`);
  };
  if (buf.byteLength < 8) fail(`file is ${buf.byteLength} bytes, too short for the 8-byte header length (truncated?)`);
  const headerLen = Number(new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true));
  if (headerLen > MAX_HEADER) fail(`header length ${headerLen} exceeds the ${MAX_HEADER}-byte limit (not a safetensors file?)`);
  if (8 + headerLen > buf.byteLength) fail(`header length ${headerLen} runs past the end of the ${buf.byteLength}-byte file (truncated?)`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, 8 + headerLen)));
  } catch (e) {
    return fail(`header is not valid JSON: ${(e as Error).message}`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) fail('header is not a JSON object');
  const dataStart = 8 + headerLen;
  const dataLen = buf.byteLength - dataStart;
  const metadata: Record<string, string> = {};
  const entries: { name: string; dtype: string; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      for (const [k, v] of Object.entries((raw ?? {}) as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__.${k} is not a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof info?.dtype !== 'string' || !(info.dtype in DTYPE_BYTES)) {
      fail(`tensor '${name}' has unknown dtype ${JSON.stringify(info?.dtype)} (known: ${Object.keys(DTYPE_BYTES).join(', ')})`);
    }
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) fail(`tensor '${name}' has an invalid shape ${JSON.stringify(shape)}`);
    const offsets = info.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isInteger(o) && o >= 0)) {
      fail(`tensor '${name}' has invalid data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataLen) fail(`tensor '${name}' data [${begin}, ${end}) lies outside the ${dataLen}-byte data section (truncated?)`);
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    const expected = count * DTYPE_BYTES[info.dtype as string];
    if (end - begin !== expected) fail(`tensor '${name}' is ${end - begin} bytes but ${info.dtype} [${(shape as number[]).join(', ')}] needs ${expected}`);
    entries.push({ name, dtype: info.dtype as string, shape: shape as number[], begin, end });
  }
  const sorted = [...entries].sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end) fail(`tensors '${sorted[i - 1].name}' and '${sorted[i].name}' overlap in the data section`);
  }
  const tensors = new Map<string, HostTensor>();
  for (const e of entries) {
    const bytes = buf.subarray(dataStart + e.begin, dataStart + e.end);
    const data = decodeHostData(e.name, e.dtype, bytes, e.shape.reduce((a, b) => a * b, 1));
    tensors.set(e.name, { dtype: data instanceof Float32Array ? 'f32' : 'i32', shape: e.shape, data, fileDtype: e.dtype });
  }
  return { tensors, metadata };
}

/** Uploads host tensors to the GPU (kept: the caller disposes them). */
export function toTensors(file: SafetensorsFile): Map<string, T.Tensor> {
  return new Map([...file.tensors].map(([k, t]) => [k, T.keep(T.Tensor.from(t.data, t.shape, t.dtype))]));
}

/** Serialises tensors (f32 as F32, f16 as F16, i32 as I32) with optional string metadata (reads them back from the GPU). */
export async function serializeSafetensors(tensors: Map<string, T.Tensor> | [string, T.Tensor][], metadata: Record<string, string> = {}): Promise<Uint8Array> {
  const host: [string, { shape: readonly number[]; data: HostData }][] = [];
  for (const [name, t] of tensors) {
    const data = (await t.data()) as Float32Array | Int32Array;
    // f16 values come back as f32 and convert to their own bits exactly.
    host.push([name, { shape: t.shape, data: t.dtype === 'f16' ? Uint16Array.from(data, toHalfBits) : data }]);
  }
  return serializeSafetensorsHost(host, metadata);
}

/** Host arrays a file can hold: Float32Array (F32), Int32Array (I32), Uint16Array of half-float bits (F16). */
type HostData = Float32Array | Int32Array | Uint16Array;

/** Serialises host arrays (see HostData) with optional string metadata. */
export function serializeSafetensorsHost(
  tensors: Iterable<[string, { shape: readonly number[]; data: HostData }]>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, { shape, data }] of tensors) {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const dtype = data instanceof Float32Array ? 'F32' : data instanceof Uint16Array ? 'F16' : 'I32';
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes.byteLength] };
    chunks.push(bytes);
    offset += bytes.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + new TextEncoder().encode(json).byteLength) % 8)) % 8); // align the data section to 8 bytes
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.byteLength;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
