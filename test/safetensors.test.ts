// safetensors: round trip, the oracle CLIP checkpoint's keys, every kind of corruption, atomic writes.
import * as assert from 'uvu/assert';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '../ops/index.ts';
import { SafetensorsError, parseSafetensors, serializeSafetensors } from '../nn/safetensors.ts';
import { readSafetensors, saveSafetensors } from '../nn/io/safetensors.ts';
import { writeFileAtomic } from '../core/io/files.ts';
import { FIXTURES, assertThrows, suite } from './harness.ts';

const test = suite('safetensors');
const dir = mkdtempSync(join(tmpdir(), 'safetensors-'));

/** Builds a file from a raw header object and data bytes (for corrupt cases). */
function raw(header: unknown, data: Uint8Array, lengthOverride?: number): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(lengthOverride ?? json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

test('round trip of f32 and i32 tensors with metadata, written atomically', async () => {
  const path = join(dir, 'round.safetensors');
  const a = T.Tensor.from([1.5, -2, 3.25, 4, 5, 6], [2, 3]);
  const b = T.Tensor.from(Int32Array.from([7, -8]), [2]);
  await saveSafetensors(path, [['a', a], ['nested.b', b]], { step: '12' });
  const file = readSafetensors(path);
  assert.equal(file.metadata, { step: '12' });
  assert.equal(file.tensors.get('a')!.shape, [2, 3]);
  assert.equal(Array.from(file.tensors.get('a')!.data), [1.5, -2, 3.25, 4, 5, 6]);
  assert.equal(Array.from(file.tensors.get('nested.b')!.data), [7, -8]);
  assert.equal(readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temporary file left behind');
  // Overwriting replaces the file whole.
  await saveSafetensors(path, [['a', b]]);
  assert.equal([...readSafetensors(path).tensors.keys()], ['a']);
});

test('F16, BF16 and I64 are converted on read', () => {
  const data = new Uint8Array(2 * 2 + 2 * 2 + 8);
  const view = new DataView(data.buffer);
  view.setUint16(0, 0x3c00, true); // f16 1.0
  view.setUint16(2, 0xc100, true); // f16 -2.5
  view.setUint16(4, 0x3fc0, true); // bf16 1.5
  view.setUint16(6, 0x4049, true); // bf16 3.140625
  view.setBigInt64(8, 49407n, true);
  const file = parseSafetensors(raw({ h: { dtype: 'F16', shape: [2], data_offsets: [0, 4] }, bf: { dtype: 'BF16', shape: [2], data_offsets: [4, 8] }, ids: { dtype: 'I64', shape: [1], data_offsets: [8, 16] } }, data));
  assert.equal(Array.from(file.tensors.get('h')!.data), [1, -2.5]);
  assert.equal(Array.from(file.tensors.get('bf')!.data), [1.5, 3.140625]);
  assert.equal(Array.from(file.tensors.get('ids')!.data), [49407]);
  assert.is(file.tensors.get('ids')!.dtype, 'i32');
});

test('the oracle OpenAI-layout CLIP checkpoint lists the expected keys and shapes', () => {
  const file = readSafetensors(`${FIXTURES}/vit_tiny.safetensors`);
  const config = JSON.parse(file.metadata.config);
  assert.is(config.vision_width, 64);
  const shape = (k: string) => file.tensors.get(k)?.shape;
  assert.equal(shape('visual.conv1.weight'), [config.vision_width, 3, config.vision_patch_size, config.vision_patch_size]);
  assert.equal(shape('visual.transformer.resblocks.0.attn.in_proj_weight'), [3 * config.vision_width, config.vision_width]);
  assert.equal(shape('token_embedding.weight'), [config.vocab_size, config.transformer_width]);
  assert.equal(shape('positional_embedding'), [config.context_length, config.transformer_width]);
  assert.equal(shape('text_projection'), [config.transformer_width, config.embed_dim]);
  assert.equal(shape('logit_scale'), [1]);
  const blocks = new Set([...file.tensors.keys()].filter((k) => k.startsWith('transformer.resblocks.')).map((k) => k.split('.')[2]));
  assert.is(blocks.size, config.transformer_layers);
});

test('each kind of corruption gets its own error', async () => {
  const good = await serializeSafetensors([['w', T.Tensor.from([1, 2, 3, 4])]]);
  await assertThrows(() => parseSafetensors(good.subarray(0, 5), 'short.st'), SafetensorsError, /short\.st: file is 5 bytes/);
  await assertThrows(() => parseSafetensors(good.subarray(0, good.length - 4), 'cut.st'), SafetensorsError, /cut\.st: tensor 'w' data \[0, 16\) lies outside the 12-byte data section/);
  await assertThrows(() => parseSafetensors(raw({}, new Uint8Array(0), 1 << 30)), SafetensorsError, /header length \d+ exceeds/);
  await assertThrows(() => parseSafetensors(raw({}, new Uint8Array(0), 4000)), SafetensorsError, /runs past the end/);
  const bytes8 = new Uint8Array(8);
  await assertThrows(() => parseSafetensors(raw({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, bytes8)), SafetensorsError, /'a' and 'b' overlap/);
  await assertThrows(() => parseSafetensors(raw({ a: { dtype: 'Q4', shape: [2], data_offsets: [0, 8] } }, bytes8)), SafetensorsError, /unknown dtype "Q4"/);
  await assertThrows(() => parseSafetensors(raw({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, bytes8)), SafetensorsError, /'a' is 8 bytes but F32 \[3\] needs 12/);
  const notJson = raw({}, new Uint8Array(0));
  notJson[8] = 0x7b;
  notJson[9] = 0x7b;
  await assertThrows(() => parseSafetensors(notJson), SafetensorsError, /header is not valid JSON/);
  await assertThrows(() => readSafetensors(join(dir, 'missing.safetensors')), SafetensorsError, /missing\.safetensors: cannot read \(ENOENT\)/);
});

test('a save that fails mid-write leaves the previous file intact and no temporary file behind', async () => {
  const sub = mkdtempSync(join(dir, 'atomic-'));
  const path = join(sub, 'keep.safetensors');
  await saveSafetensors(path, [['a', T.Tensor.from([1, 2])]]);
  const before = readFileSync(path);
  // Bytes whose length can be read twice and then fails: the write has started (the whole payload may be on
  // disk) when the error strikes, as a full disk or a crash would. A writer that writes to `path` directly
  // leaves it holding the new bytes; an atomic one leaves it untouched.
  let reads = 0;
  class FailingBytes extends Uint8Array {
    override get byteLength(): number {
      if (++reads > 2) throw new Error('disk full');
      return super.byteLength;
    }
  }
  const payload = new FailingBytes(await serializeSafetensors([['a', T.Tensor.from([3, 4, 5])]]));
  assert.throws(() => writeFileAtomic(path, payload), /disk full/);
  assert.ok(reads > 2, 'the writer got as far as writing');
  assert.ok(readFileSync(path).equals(before), 'the previous file is intact');
  assert.equal(readdirSync(sub), ['keep.safetensors']);
});

test.run();
