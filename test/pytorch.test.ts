// PyTorch .pt files: a micro CLIP built by openai/CLIP's model code and saved three ways (a torch.save'd
// state dict, an open_clip-style bfloat16 checkpoint under `module.`, and OpenAI's released form: a traced
// TorchScript module with float16 weights; scripts/fixtures/openai_pt.py), read without Python and checked
// against PyTorch's own outputs; and damaged or hostile files refused with one line naming what is wrong.
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { unzipSync, zipSync } from 'fflate';
import * as T from '../ops/index.ts';
import { fromHalfBits, toHalfBits } from '../core/dtype.ts';
import { loadClip } from '../clip/io/weights.ts';
import { clipFromSafetensors } from '../clip/weights.ts';
import { readSafetensors } from '../nn/io/safetensors.ts';
import { TorchFileError, parseTorchFile } from '../nn/pytorch.ts';
import { readTorchFile } from '../nn/io/pytorch.ts';
import { FIXTURES, assertClose, assertThrows, suite } from './harness.ts';

const test = suite('pytorch');
const DIR = `${FIXTURES}/pt`;
const io = JSON.parse(readFileSync(`${DIR}/micro.io.json`, 'utf8')) as Record<'images' | 'tokens' | 'image_features' | 'text_features' | 'logits_per_image', number[]>;

test('a torch.save state dict builds the model PyTorch ran: features and logits as PyTorch computed them', async () => {
  const model = loadClip(`${DIR}/micro.state_dict.pt`);
  model.eval();
  const images = T.Tensor.from(Float32Array.from(io.images), [2, 3, 16, 16]);
  const tokens = T.Tensor.from(Int32Array.from(io.tokens), [2, 8], 'i32');
  const out = T.noGrad(() => model.forward(images, tokens));
  assertClose(await out.imageFeatures.data(), io.image_features, 'image features', { atol: 1e-6, rtol: 1e-5 });
  assertClose(await out.textFeatures.data(), io.text_features, 'text features', { atol: 1e-6, rtol: 1e-5 });
  assertClose(await out.logitsPerImage.data(), io.logits_per_image, 'logits per image', { atol: 1e-5, rtol: 1e-5 });
  for (const t of [...Object.values(out), images, tokens]) t.dispose();
  model.dispose();
});

test('TorchScript (OpenAI\'s form, float16 weights) and bfloat16 DDP checkpoints hold the same tensors, rounded', () => {
  const reference = readTorchFile(`${DIR}/micro.state_dict.pt`).tensors;
  const half = (v: number) => fromHalfBits(toHalfBits(v));
  const bfloat = (v: number) => {
    const bits = new Uint32Array(Float32Array.of(v).buffer)[0];
    return new Float32Array(Uint32Array.of((bits + 0x7fff + ((bits >> 16) & 1)) & 0xffff0000).buffer)[0];
  };
  const jit = readTorchFile(`${DIR}/micro.jit.pt`).tensors;
  const checkpoint = readTorchFile(`${DIR}/micro.checkpoint.pt`).tensors;
  // The jit file also keeps OpenAI's scalar buffers, which its build_model (and clip/weights.ts) drop.
  assert.equal([...jit.keys()].filter((k) => !reference.has(k)).sort(), ['context_length', 'input_resolution', 'vocab_size']);
  assert.is(jit.get('vocab_size')!.data[0], 64);
  assert.equal([...checkpoint.keys()].sort(), [...reference.keys()].sort(), 'the module. prefix removed');
  const halved = [...jit].filter(([, t]) => t.fileDtype === 'F16').map(([k]) => k);
  assert.ok(halved.includes('visual.transformer.resblocks.0.attn.in_proj_weight') && halved.includes('text_projection') && !halved.includes('positional_embedding'), `float16 where convert_weights puts it: ${halved.join(', ')}`);
  for (const [k, ref] of reference) {
    const round = jit.get(k)!.fileDtype === 'F16' ? half : (v: number) => v;
    assert.equal(jit.get(k)!.shape, ref.shape, k);
    assertClose(jit.get(k)!.data, Array.from(ref.data, round), `jit ${k}`, { atol: 0, rtol: 0 });
    assert.is(checkpoint.get(k)!.fileDtype, 'BF16');
    assertClose(checkpoint.get(k)!.data, Array.from(ref.data, bfloat), `checkpoint ${k}`, { atol: 0, rtol: 0 });
  }
  // Without the classes' code (which older PyTorch wrote without __buffers__), every tensor attribute is taken.
  const members = unzipSync(readFileSync(`${DIR}/micro.jit.pt`));
  const codeless = zipSync(Object.fromEntries(Object.entries(members).filter(([k]) => !k.includes('/code/'))), { level: 0 });
  assert.ok(Object.keys(members).length > Object.keys(unzipSync(codeless)).length, 'code removed');
  assert.equal([...parseTorchFile(codeless, 'codeless.pt').tensors.keys()].sort(), [...jit.keys()].sort());
  const model = loadClip(`${DIR}/micro.jit.pt`);
  assert.equal([model.config.visionWidth, model.config.transformerHeads, model.config.imageResolution], [64, 1, 16]);
  model.dispose();
});

test('batch norm step counters (num_batches_tracked) in a PyTorch state dict are not model keys and are ignored', () => {
  const file = readSafetensors(`${FIXTURES}/rn_tiny.safetensors`);
  const counters = [...file.tensors.keys()].filter((k) => k.endsWith('.running_mean')).map((k) => k.replace(/running_mean$/, 'num_batches_tracked'));
  assert.ok(counters.length > 5, 'batch norms in rn_tiny');
  for (const k of counters) file.tensors.set(k, { dtype: 'i32', shape: [], data: Int32Array.of(7), fileDtype: 'I64' });
  clipFromSafetensors(file, 'rn_tiny.safetensors').dispose();
});

/** A torch.save-shaped archive around the pickle `pickle` (and records `data/<key>`), stored uncompressed. */
const archive = (pickle: number[], records: Record<string, Uint8Array> = {}) =>
  zipSync({ 'x/data.pkl': Uint8Array.from(pickle), ...Object.fromEntries(Object.entries(records).map(([k, v]) => [`x/data/${k}`, v])) }, { level: 0 });
const bytes = (s: string) => [...s].map((c) => c.charCodeAt(0));

test('damaged and hostile .pt files are refused with one line naming the file and the cause', async () => {
  const good = readFileSync(`${DIR}/micro.state_dict.pt`);
  const refuse = (data: Uint8Array, ...patterns: RegExp[]) => assertThrows(() => parseTorchFile(data, 'w.pt'), TorchFileError, /^w\.pt: [^\n]+$/, ...patterns);
  await refuse(good.subarray(0, good.length >> 1), /truncated/);
  await refuse(good.subarray(0, good.length - 30), /truncated/);
  await refuse(new Uint8Array([0x80, 2, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46]), /legacy PyTorch file/);
  await refuse(new TextEncoder().encode('{"a": 1}'), /not a PyTorch \.pt file/);
  // os.system('echo') as a pickle: refused at the global, before anything could be called.
  await refuse(archive([0x80, 2, ...bytes('cos\nsystem\n'), ...bytes('X'), 4, 0, 0, 0, ...bytes('echo'), 0x85, 0x52, 0x2e]), /refusing pickle global 'os\.system'/, /no code is run/);
  await refuse(archive([0x80, 4, 0x8c, 8, ...bytes('builtins'), 0x8c, 4, ...bytes('eval'), 0x93, 0x2e]), /refusing pickle global 'builtins\.eval'/);
  await refuse(archive([0x80, 2, ...bytes('(ios\nsystem\n'), 0x2e]), /unsupported pickle opcode 0x69 \(INST\) at byte 3/);
  await refuse(archive([0x80, 2, 0x4b]), /ends inside an instruction/);
  await refuse(archive([0x80, 2, 0x4b, 7, 0x2e]), /holds a number, not a state dict/);
  await refuse(archive([0x80, 2, 0x7d, 0x2e]), /holds no tensors/);
  // A tensor whose storage record is missing, and one reaching past its storage.
  const tensor = (numel: number, shape: number) => [0x80, 2, 0x7d, ...bytes('X'), 1, 0, 0, 0, ...bytes('w'), ...bytes('ctorch._utils\n_rebuild_tensor_v2\n'), 0x28, 0x28, ...bytes('X'), 7, 0, 0, 0, ...bytes('storage'), ...bytes('ctorch\nFloatStorage\n'), ...bytes('X'), 1, 0, 0, 0, ...bytes('0'), ...bytes('X'), 3, 0, 0, 0, ...bytes('cpu'), 0x4b, numel, 0x74, 0x51, 0x4b, 0, 0x4b, shape, 0x85, 0x4b, 1, 0x85, 0x89, 0x4e, 0x74, 0x52, 0x73, 0x2e];
  assert.equal([...parseTorchFile(archive(tensor(2, 2), { 0: new Uint8Array(Float32Array.of(1.5, -2).buffer) }), 'ok.pt').tensors.get('w')!.data], [1.5, -2]);
  await refuse(archive(tensor(2, 2)), /'w' refers to storage 0, which the archive lacks/);
  await refuse(archive(tensor(2, 3), { 0: new Uint8Array(8) }), /'w' \[3\] reaches element 2 of a storage of 2/);
});

test.run();
