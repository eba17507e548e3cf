// ftfy's mojibake repair in CLIP's text cleaning: fixText against ftfy.fix_text itself (6.3.1, run by
// scripts/fixtures/ftfy_cases.py) on text in 15 languages and scripts decoded with the wrong codec — Windows-1252,
// Latin-1, Windows-1251/1250, Mac Roman, DOS code page 437, twice over — on clean text that must stay as it is,
// and on Windows-1252 read as Latin-1.
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { cleanText, fixText } from '../clip/tokenizer.ts';
import { FIXTURES, suite } from './harness.ts';

const test = suite('mojibake');
const { cases } = JSON.parse(readFileSync(`${FIXTURES}/mojibake_cases.json`, 'utf8')) as { cases: [string, string][] };

// ftfy's decode_inconsistent_utf8, which clip/mojibake.ts does not reproduce, repairs part of this one.
const NOT_REPRODUCED = new Set(['ÃƒÂ']);

test('fixText repairs mojibake exactly as ftfy.fix_text does, and leaves clean text alone', () => {
  assert.ok(cases.length > 100, 'fixture cases');
  const repaired = cases.filter(([input, fixed]) => input !== fixed).length;
  assert.ok(repaired > 80, `cases that ftfy changes: ${repaired}`);
  for (const [input, fixed] of cases) {
    if (NOT_REPRODUCED.has(input)) assert.is.not(fixText(input), fixed, `${JSON.stringify(input)} is now reproduced: drop it from NOT_REPRODUCED`);
    else assert.is(fixText(input), fixed, JSON.stringify(input));
  }
});

test('a mis-decoded caption cleans to the caption', () => {
  // What openai/CLIP's basic_clean + whitespace_clean + lower() give (ftfy 6.3.1).
  assert.is(cleanText('A photo of a crÃ¨me brÃ»lÃ©e â€” â€œtastyâ€\u009d'), 'a photo of a crème brûlée — "tasty"');
  assert.is(cleanText('Ð\u009fÑ\u0080Ð¸Ð²ÐµÑ\u0082'), 'привет');
});

test.run();
