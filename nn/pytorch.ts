// PyTorch .pt files on bytes, read without Python and without executing anything: the zip archive
// `torch.save` (PyTorch ≥ 1.6) and `torch.jit.save` write, holding `<name>/data.pkl` — a pickle whose tensors
// are persistent references to the raw little-endian records `<name>/data/<key>`.
//
// The pickle is interpreted by a small stack machine that knows only the opcodes a state dict uses (dicts,
// lists, tuples, strings, numbers, the memo, persistent ids) and only these globals:
//   collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter, torch.<Type>Storage,
// and, in TorchScript archives, `__torch__.*` module classes, which are recorded as plain objects whose
// attributes BUILD sets (their code in `<name>/code/` is only searched for `__parameters__`/`__buffers__`,
// which say which tensor attributes make up the state dict, exactly as `module.state_dict()` does). Any other
// opcode or global is refused with one line naming it: nothing in a file can run code here.
// Node's file reading is nn/io/pytorch.ts.
import { inflateSync } from 'fflate';
import { DTYPE_BYTES, decodeHostData, type HostTensor, type SafetensorsFile } from './safetensors.ts';

/** A .pt file that cannot be read, or holds what a state dict does not (the message names file and cause). */
export class TorchFileError extends Error {
  override name = 'TorchFileError';
}

// ---- zip ---------------------------------------------------------------------------------------------------

/** The members of a zip archive by name; stored members are views of `bytes`, deflated ones inflate on read. */
function readZip(bytes: Uint8Array, fail: (message: string) => never): Map<string, () => Uint8Array> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u16 = (at: number) => view.getUint16(at, true);
  const u32 = (at: number) => view.getUint32(at, true);
  const u64 = (at: number) => Number(view.getBigUint64(at, true));
  let eocd = -1;
  for (let at = bytes.length - 22; at >= Math.max(0, bytes.length - 22 - 65535); at--) {
    if (u32(at) === 0x06054b50) {
      eocd = at;
      break;
    }
  }
  if (eocd < 0) fail('not a complete zip archive (no end-of-directory record: truncated?)');
  let [count, dirOffset] = [u16(eocd + 10), u32(eocd + 16)];
  if (count === 0xffff || dirOffset === 0xffffffff) {
    // zip64: the locator just before the end record points at the 64-bit end record.
    const locator = eocd - 20;
    if (locator < 0 || u32(locator) !== 0x07064b50) fail('zip64 archive without its end-of-directory locator');
    const end64 = u64(locator + 8);
    if (end64 + 56 > bytes.length || u32(end64) !== 0x06064b50) fail('zip64 end-of-directory record out of place');
    [count, dirOffset] = [u64(end64 + 32), u64(end64 + 48)];
  }
  const members = new Map<string, () => Uint8Array>();
  let at = dirOffset;
  for (let i = 0; i < count; i++) {
    if (at + 46 > bytes.length || u32(at) !== 0x02014b50) fail(`zip directory entry ${i} is damaged or outside the file (truncated?)`);
    const method = u16(at + 10);
    let [size, local] = [u32(at + 20), u32(at + 42)];
    const [nameLength, extraLength, commentLength] = [u16(at + 28), u16(at + 30), u16(at + 32)];
    const name = new TextDecoder().decode(bytes.subarray(at + 46, at + 46 + nameLength));
    // zip64 extra field: the 64-bit sizes and offset, in this order, for those stored as 0xffffffff.
    for (let e = at + 46 + nameLength; e + 4 <= at + 46 + nameLength + extraLength; e += 4 + u16(e + 2)) {
      if (u16(e) !== 0x0001) continue;
      let field = e + 4;
      if (u32(at + 24) === 0xffffffff) field += 8;
      if (size === 0xffffffff) [size, field] = [u64(field), field + 8];
      if (local === 0xffffffff) local = u64(field);
    }
    at += 46 + nameLength + extraLength + commentLength;
    members.set(name, () => {
      if (local + 30 > bytes.length || u32(local) !== 0x04034b50) fail(`zip member '${name}' is damaged or outside the file (truncated?)`);
      const start = local + 30 + u16(local + 26) + u16(local + 28);
      if (start + size > bytes.length) fail(`zip member '${name}' runs past the end of the file (truncated?)`);
      const data = bytes.subarray(start, start + size);
      if (method === 0) return data;
      if (method === 8) return inflateSync(data);
      return fail(`zip member '${name}' uses compression method ${method} (only stored and deflated are read)`);
    });
  }
  return members;
}

// ---- pickle ------------------------------------------------------------------------------------------------

/** A tensor a pickle rebuilt: its storage, and the view of it (offset, size, stride in elements). */
interface PickledTensor {
  kind: 'tensor';
  storage: Storage;
  offset: number;
  shape: number[];
  stride: number[];
}
interface Storage {
  kind: 'storage';
  dtype: string;
  key: string;
  numel: number;
}
/** A class or function a pickle named (GLOBAL), allowed by `allowedGlobal`. */
interface Global {
  kind: 'global';
  module: string;
  name: string;
}
/** An instance of a TorchScript class (`__torch__.…`): its attributes, as BUILD set them. */
interface ScriptObject {
  kind: 'object';
  className: string;
  attributes: Map<string, Value>;
}
type Value = null | boolean | number | string | Uint8Array | Value[] | Map<Value, Value> | PickledTensor | Storage | Global | ScriptObject | typeof MARK;
const MARK = Symbol('mark');

/** Storage classes by name, as safetensors dtype names (nn/safetensors.ts converts their bytes). */
const STORAGE_DTYPES: Record<string, string> = {
  FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16', DoubleStorage: 'F64', LongStorage: 'I64',
  IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8', BoolStorage: 'BOOL',
};

function allowedGlobal(module: string, name: string): boolean {
  return (
    (module === 'collections' && name === 'OrderedDict') ||
    (module === 'torch._utils' && (name === '_rebuild_tensor_v2' || name === '_rebuild_parameter')) ||
    (module === 'torch' && name in STORAGE_DTYPES) ||
    (module.startsWith('__torch__.') || module === '__torch__')
  );
}

const OPCODE_NAMES: Record<number, string> = {
  0x63: 'GLOBAL', 0x69: 'INST', 0x6f: 'OBJ', 0x52: 'REDUCE', 0x81: 'NEWOBJ', 0x92: 'NEWOBJ_EX', 0x93: 'STACK_GLOBAL',
  0x50: 'PERSID', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x49: 'INT', 0x4c: 'LONG', 0x46: 'FLOAT', 0x53: 'STRING', 0x56: 'UNICODE',
};

/**
 * Runs the pickle `data` on the stack machine described at the top; `fail` ends it with one line. Returns the
 * unpickled value (tensors still as storage references).
 */
function unpickle(data: Uint8Array, fail: (message: string) => never): Value {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const stack: Value[] = [];
  const memo = new Map<number, Value>();
  const text = new TextDecoder('utf-8', { fatal: true });
  let at = 0;
  const need = (n: number) => {
    if (at + n > data.length) fail(`data.pkl ends inside an instruction at byte ${at} (truncated?)`);
    const start = at;
    at += n;
    return start;
  };
  const pop = (): Value => {
    if (stack.length === 0) fail(`data.pkl pops an empty stack at byte ${at}`);
    return stack.pop()!;
  };
  const popMark = (): Value[] => {
    const mark = stack.lastIndexOf(MARK);
    if (mark < 0) fail(`data.pkl has no mark for the instruction at byte ${at}`);
    const items = stack.splice(mark);
    return items.slice(1);
  };
  const top = (): Value => (stack.length ? stack[stack.length - 1] : fail(`data.pkl reads an empty stack at byte ${at}`));
  const dictAt = (v: Value): Map<Value, Value> => (v instanceof Map ? v : fail(`data.pkl sets items on a non-dict at byte ${at}`));
  const listAt = (v: Value): Value[] => (Array.isArray(v) ? v : fail(`data.pkl appends to a non-list at byte ${at}`));
  const line = () => {
    const end = data.indexOf(0x0a, at);
    if (end < 0) fail(`data.pkl ends inside a GLOBAL at byte ${at} (truncated?)`);
    const s = new TextDecoder().decode(data.subarray(at, end));
    at = end + 1;
    return s;
  };
  const global = (module: string, name: string): Global => {
    if (!allowedGlobal(module, name)) {
      fail(`refusing pickle global '${module}.${name}': only tensors, state dicts and TorchScript modules are read (no code is run)`);
    }
    return { kind: 'global', module, name };
  };
  const string = (n: number) => text.decode(data.subarray(need(n), at));
  for (;;) {
    const op = data[need(1)];
    switch (op) {
      case 0x80: need(1); break; // PROTO
      case 0x95: need(8); break; // FRAME
      case 0x2e: return pop(); // STOP
      case 0x28: stack.push(MARK); break;
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push([]); break; // EMPTY_TUPLE
      case 0x64: { // DICT
        const items = popMark();
        const dict = new Map<Value, Value>();
        for (let i = 0; i + 1 < items.length; i += 2) dict.set(items[i], items[i + 1]);
        stack.push(dict);
        break;
      }
      case 0x6c: case 0x74: stack.push(popMark()); break; // LIST, TUPLE
      case 0x85: stack.push([pop()]); break; // TUPLE1
      case 0x86: { const b = pop(); stack.push([pop(), b]); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); stack.push([pop(), b, c]); break; } // TUPLE3
      case 0x73: { const v = pop(); const k = pop(); dictAt(top()).set(k, v); break; } // SETITEM
      case 0x75: { // SETITEMS
        const items = popMark();
        const dict = dictAt(top());
        for (let i = 0; i + 1 < items.length; i += 2) dict.set(items[i], items[i + 1]);
        break;
      }
      case 0x61: { const v = pop(); listAt(top()).push(v); break; } // APPEND
      case 0x65: { const items = popMark(); listAt(top()).push(...items); break; } // APPENDS
      case 0x71: memo.set(data[need(1)], top()); break; // BINPUT
      case 0x72: memo.set(view.getUint32(need(4), true), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: case 0x6a: { // BINGET, LONG_BINGET
        const index = op === 0x68 ? data[need(1)] : view.getUint32(need(4), true);
        if (!memo.has(index)) fail(`data.pkl refers to memo entry ${index}, never stored (byte ${at})`);
        stack.push(memo.get(index)!);
        break;
      }
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4a: stack.push(view.getInt32(need(4), true)); break; // BININT
      case 0x4b: stack.push(data[need(1)]); break; // BININT1
      case 0x4d: stack.push(view.getUint16(need(2), true)); break; // BININT2
      case 0x8a: { // LONG1: n little-endian two's-complement bytes
        const n = data[need(1)];
        const bytes = data.subarray(need(n), at);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
        if (n > 0 && bytes[n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) {
          fail(`data.pkl holds the integer ${v}, too large to be a size or index`);
        }
        stack.push(Number(v));
        break;
      }
      case 0x47: stack.push(view.getFloat64(need(8), false)); break; // BINFLOAT (big-endian)
      case 0x58: stack.push(string(view.getUint32(need(4), true))); break; // BINUNICODE
      case 0x8c: stack.push(string(data[need(1)])); break; // SHORT_BINUNICODE
      case 0x8d: stack.push(string(Number(view.getBigUint64(need(8), true)))); break; // BINUNICODE8
      case 0x55: stack.push(new TextDecoder('latin1').decode(data.subarray(need(data[need(1)]), at))); break; // SHORT_BINSTRING
      case 0x54: stack.push(new TextDecoder('latin1').decode(data.subarray(need(view.getUint32(need(4), true)), at))); break; // BINSTRING
      case 0x43: stack.push(data.slice(need(data[need(1)]), at)); break; // SHORT_BINBYTES
      case 0x42: stack.push(data.slice(need(view.getUint32(need(4), true)), at)); break; // BINBYTES
      case 0x63: { const module = line(); stack.push(global(module, line())); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail(`data.pkl names a global with non-strings at byte ${at}`);
        stack.push(global(module, name));
        break;
      }
      case 0x51: stack.push(persistent(pop(), fail)); break; // BINPERSID
      case 0x52: { // REDUCE
        const args = pop();
        const callable = pop();
        stack.push(call(callable, Array.isArray(args) ? args : fail(`data.pkl calls with non-tuple arguments at byte ${at}`), fail));
        break;
      }
      case 0x81: { // NEWOBJ: only TorchScript classes, with no arguments
        const args = pop();
        const cls = pop();
        if (!isGlobal(cls) || !cls.module.startsWith('__torch__') || !Array.isArray(args) || args.length !== 0) {
          fail(`data.pkl constructs ${describe(cls)} with NEWOBJ: only TorchScript module classes are read`);
        }
        stack.push({ kind: 'object', className: `${cls.module}.${cls.name}`, attributes: new Map() });
        break;
      }
      case 0x62: { // BUILD: a TorchScript object's attributes; an OrderedDict's own attributes (_metadata) are dropped
        const state = pop();
        const target = top();
        if (isObject(target) && state instanceof Map) for (const [k, v] of state) target.attributes.set(String(k), v);
        else if (!(target instanceof Map)) fail(`data.pkl sets the state of ${describe(target)} with BUILD: only TorchScript modules and dicts are read`);
        break;
      }
      default:
        fail(
          `unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')}${OPCODE_NAMES[op] ? ` (${OPCODE_NAMES[op]})` : ''} at byte ${at - 1} of data.pkl: ` +
            'only the subset a state dict uses is read',
        );
    }
  }
}

const isGlobal = (v: Value): v is Global => typeof v === 'object' && v !== null && (v as Global).kind === 'global';
const isObject = (v: Value): v is ScriptObject => typeof v === 'object' && v !== null && (v as ScriptObject).kind === 'object';
const isTensor = (v: Value): v is PickledTensor => typeof v === 'object' && v !== null && (v as PickledTensor).kind === 'tensor';
const isIntList = (v: Value): v is number[] => Array.isArray(v) && v.every((x) => Number.isInteger(x) && (x as number) >= 0);

function describe(v: Value): string {
  if (isGlobal(v)) return `'${v.module}.${v.name}'`;
  if (isObject(v)) return `an instance of '${v.className}'`;
  return v instanceof Map ? 'a dict' : Array.isArray(v) ? 'a tuple or list' : typeof v === 'symbol' ? 'a mark' : `a ${typeof v}`;
}

/** A persistent id: ('storage', torch.<Type>Storage, key, location, numel). */
function persistent(id: Value, fail: (message: string) => never): Storage {
  if (!Array.isArray(id) || id[0] !== 'storage' || id.length !== 5) fail(`data.pkl has a persistent id that is not a storage reference`);
  const [, type, key, , numel] = id;
  if (!isGlobal(type) || type.module !== 'torch' || !(type.name in STORAGE_DTYPES)) fail(`data.pkl refers to a storage of type ${describe(type)}`);
  if (typeof key !== 'string' || !/^\w+$/.test(key) || !Number.isInteger(numel) || (numel as number) < 0) fail('data.pkl has a malformed storage reference');
  return { kind: 'storage', dtype: STORAGE_DTYPES[type.name], key, numel: numel as number };
}

/** REDUCE with one of the allowed callables. */
function call(callable: Value, args: Value[], fail: (message: string) => never): Value {
  if (!isGlobal(callable)) return fail(`data.pkl calls ${describe(callable)}: only OrderedDict and the tensor rebuilders are called`);
  const name = `${callable.module}.${callable.name}`;
  if (name === 'collections.OrderedDict' && args.length === 0) return new Map();
  if (name === 'torch._utils._rebuild_parameter' && isTensor(args[0])) return args[0];
  if (name === 'torch._utils._rebuild_tensor_v2') {
    const [storage, offset, shape, stride] = args;
    const isStorage = typeof storage === 'object' && storage !== null && (storage as Storage).kind === 'storage';
    if (!isStorage || !Number.isInteger(offset) || !isIntList(shape) || !isIntList(stride) || shape.length !== stride.length) {
      fail('data.pkl rebuilds a tensor from malformed arguments');
    }
    return { kind: 'tensor', storage: storage as Storage, offset: offset as number, shape, stride };
  }
  return fail(`data.pkl calls '${name}' with arguments it is not read with`);
}

// ---- state dicts -------------------------------------------------------------------------------------------

/**
 * The tensors of a TorchScript module tree, named as `module.state_dict()` names them: each module's
 * parameters and buffers, then its submodules' under `name.`. Which tensor attributes those are, the class's
 * code declares; where it does not (code without `__buffers__`, from older PyTorch), every tensor attribute is.
 */
function scriptStateDict(
  root: ScriptObject,
  declared: (className: string) => Set<string> | null,
  fail: (message: string) => never,
): Map<string, PickledTensor> {
  const out = new Map<string, PickledTensor>();
  const walk = (object: ScriptObject, prefix: string) => {
    const names = declared(object.className);
    for (const [name, value] of object.attributes) {
      if (isTensor(value) && (names === null || names.has(name))) out.set(prefix + name, value);
      else if (isObject(value)) walk(value, `${prefix}${name}.`);
      else if (names?.has(name) && value !== null) {
        fail(`'${prefix}${name}' is declared a parameter or buffer of ${object.className} but is ${describe(value)}`);
      }
    }
  };
  walk(root, '');
  return out;
}

/**
 * Parameter and buffer names of each TorchScript class, from the `__parameters__` and `__buffers__` lines of
 * its code (`<archive>/code/<module path>.py`); null where those are not both there.
 */
function declaredNames(members: Map<string, () => Uint8Array>, prefix: string): (className: string) => Set<string> | null {
  const files = new Map<string, Map<string, Set<string>>>();
  return (className) => {
    const dot = className.lastIndexOf('.');
    const path = `${prefix}code/${className.slice(0, dot).replace(/\./g, '/')}.py`;
    if (!files.has(path)) {
      const classes = new Map<string, Set<string>>();
      const source = members.get(path);
      const code = source ? new TextDecoder().decode(source()) : '';
      for (const m of code.matchAll(/^class (\w+)\(Module\):\n {2}__parameters__ = \[([^\]]*)\]\n {2}__buffers__ = \[([^\]]*)\]/gm)) {
        classes.set(m[1], new Set([...`${m[2]},${m[3]}`.matchAll(/"(\w+)"/g)].map((n) => n[1])));
      }
      files.set(path, classes);
    }
    return files.get(path)!.get(className.slice(dot + 1)) ?? null;
  };
}

/** A state dict's tensors from a dict value: a plain state dict, or a checkpoint's `state_dict` entry. */
function dictStateDict(root: Map<Value, Value>, fail: (message: string) => never): Map<string, PickledTensor> {
  const inner = root.get('state_dict');
  const dict = inner instanceof Map ? inner : root;
  const out = new Map<string, PickledTensor>();
  for (const [k, v] of dict) {
    if (typeof k !== 'string') fail(`the state dict has a key that is not a string (${describe(k)})`);
    if (isTensor(v)) out.set(k, v);
  }
  if (out.size === 0) {
    fail(inner instanceof Map ? "its 'state_dict' holds no tensors" : `it holds no tensors (keys: ${[...dict.keys()].slice(0, 8).map(String).join(', ')})`);
  }
  // DistributedDataParallel wraps the model as `module`: its checkpoints' keys all start so.
  if ([...out.keys()].every((k) => k.startsWith('module.'))) return new Map([...out].map(([k, v]) => [k.slice('module.'.length), v]));
  return out;
}

/** A rebuilt tensor's values, gathered from its storage record (any strides) and converted as safetensors does. */
function materialize(name: string, t: PickledTensor, records: Map<string, () => Uint8Array>, prefix: string, fail: (message: string) => never): HostTensor {
  const { storage, shape, stride, offset } = t;
  const record = records.get(`${prefix}data/${storage.key}`);
  if (!record) fail(`'${name}' refers to storage ${storage.key}, which the archive lacks (${prefix}data/${storage.key})`);
  const bytes = record();
  const size = DTYPE_BYTES[storage.dtype];
  if (bytes.length < storage.numel * size) {
    fail(`storage ${storage.key} of '${name}' is ${bytes.length} bytes, less than its ${storage.numel} ${storage.dtype} elements`);
  }
  const count = shape.reduce((a, b) => a * b, 1);
  const last = count === 0 ? offset : offset + shape.reduce((s, n, d) => s + (n - 1) * stride[d], 0);
  if (last >= Math.max(storage.numel, 1) && count > 0) fail(`'${name}' [${shape.join(', ')}] reaches element ${last} of a storage of ${storage.numel}`);
  const contiguous = shape.every((_, d) => stride[d] === shape.slice(d + 1).reduce((a, b) => a * b, 1) || shape[d] === 1);
  let view: Uint8Array;
  if (contiguous) view = bytes.subarray(offset * size, (offset + count) * size);
  else {
    view = new Uint8Array(count * size);
    const index = new Array<number>(shape.length).fill(0);
    for (let i = 0; i < count; i++) {
      const from = (offset + index.reduce((s, k, d) => s + k * stride[d], 0)) * size;
      view.set(bytes.subarray(from, from + size), i * size);
      for (let d = shape.length - 1; d >= 0 && ++index[d] === shape[d]; d--) index[d] = 0;
    }
  }
  const data = decodeHostData(name, storage.dtype, view, count);
  return { dtype: data instanceof Float32Array ? 'f32' : 'i32', shape: [...shape], data, fileDtype: storage.dtype };
}

/**
 * Reads a PyTorch zip archive — `torch.save(state_dict)`, a training checkpoint holding `state_dict`, or a
 * TorchScript module from `torch.jit.save` (OpenAI's released CLIP files) — as host tensors named as its state
 * dict. `source` names the file in errors, which are TorchFileErrors of one line.
 */
export function parseTorchFile(bytes: Uint8Array, source = 'buffer'): SafetensorsFile {
  const fail = (message: string): never => {
    throw new TorchFileError(`${source}: ${message}`);
  };
  if (bytes[0] === 0x80 && bytes[1] <= 5) {
    fail('a legacy PyTorch file (saved before PyTorch 1.6, not a zip archive): load it in PyTorch and torch.save it again');
  }
  if (bytes.length < 22 || bytes[0] !== 0x50 || bytes[1] !== 0x4b) fail('not a PyTorch .pt file (no zip signature)');
  const members = readZip(bytes, fail);
  const pickles = [...members.keys()].filter((k) => /^[^/]+\/data\.pkl$/.test(k));
  if (pickles.length !== 1) fail(`not a PyTorch archive: expected one <name>/data.pkl, found ${pickles.length}`);
  const prefix = pickles[0].slice(0, -'data.pkl'.length);
  const root = unpickle(members.get(pickles[0])!(), fail);
  const tensors = isObject(root)
    ? scriptStateDict(root, declaredNames(members, prefix), fail)
    : root instanceof Map
      ? dictStateDict(root, fail)
      : fail(`data.pkl holds ${describe(root)}, not a state dict or a TorchScript module`);
  const out = new Map<string, HostTensor>();
  for (const [name, t] of tensors) out.set(name, materialize(name, t, members, prefix, fail));
  return { tensors: out, metadata: {} };
}
