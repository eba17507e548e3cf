// The CLIP tokenizer: exact ids for OpenAI's reference cases, truncation, decoding, unseen scripts, and a
// trained vocabulary that round-trips through the same file format.
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TokenizerError, trainBpe } from '../clip/tokenizer.ts';
import { readTokenizer, saveBpe } from '../clip/io/vocab.ts';
import { FIXTURES, assertThrows, suite } from './harness.ts';

const test = suite('tokenizer');
const cases = JSON.parse(readFileSync(`${FIXTURES}/tokenizer_cases.json`, 'utf8')) as {
  context_length: number;
  sot: number;
  eot: number;
  vocab_size: number;
  cases: { text: string; ids: number[]; bpe: number[] }[];
};
const tok = readTokenizer();

test('vocabulary and special tokens match CLIP', () => {
  assert.is(tok.vocabSize, cases.vocab_size);
  assert.is(tok.sot, cases.sot);
  assert.is(tok.eot, cases.eot);
});

test('every reference case tokenizes to the exact ids', () => {
  for (const c of cases.cases) {
    assert.equal(tok.encode(c.text), c.bpe, `bpe of ${JSON.stringify(c.text.slice(0, 40))}`);
    assert.equal(Array.from(tok.tokenize(c.text, { contextLength: cases.context_length })), c.ids, `ids of ${JSON.stringify(c.text.slice(0, 40))}`);
  }
});

test('batches, truncation keeping the end token, and the option to refuse', async () => {
  const ids = tok.tokenize(['a cat', 'a dog'], { contextLength: 5 });
  assert.equal(Array.from(ids), [49406, 320, 2368, 49407, 0, 49406, 320, 1929, 49407, 0]);
  const long = tok.tokenize('one two three four five six', { contextLength: 5 });
  assert.is(long[4], tok.eot);
  await assertThrows(() => tok.tokenize('one two three four five six', { contextLength: 5, truncate: false }), TokenizerError, /8 tokens, more than the context length 5/);
});

test('decode inverts encode for any script, emoji included', () => {
  for (const text of ['Ελληνικά και русский', 'مرحبا بالعالم', '東京 の 写真 🙂🚀', 'naïve café']) {
    assert.is(tok.decode(tok.encode(text)), text.toLowerCase());
  }
  // As OpenAI's decode: every pre-token ends a word, so punctuation comes back space-separated.
  assert.is(tok.decode(tok.encode('a photo of a cat.')), 'a photo of a cat .');
  assert.is(tok.decode(tok.tokenize('hello world')), 'hello world');
});

test('a vocabulary trained on captions loads through the same file format and encodes losslessly', () => {
  const corpus = Array.from({ length: 200 }, (_, i) => `a ${['small', 'large'][i % 2]} ${['red', 'blue', 'green'][i % 3]} ${['circle', 'square'][i % 2 ? 1 : 0]} above a ${['yellow', 'purple'][i % 2]} triangle`);
  const merges = trainBpe(corpus, 600);
  assert.ok(merges.length > 30 && merges.length <= 600 - 514, `${merges.length} merges`);
  const path = join(mkdtempSync(join(tmpdir(), 'bpe-')), 'captions.txt.gz');
  saveBpe(path, merges);
  const small = readTokenizer(path, 600);
  assert.is(small.vocabSize, 514 + merges.length);
  const text = 'a small red circle above a yellow triangle';
  const ids = small.encode(text);
  assert.ok(ids.length <= 9, `frequent words become single tokens (${ids.length} ids)`);
  assert.is(small.decode(ids), text);
  assert.is(small.decode(small.encode('an unseen zebra!')), 'an unseen zebra !');
});

test.run();
