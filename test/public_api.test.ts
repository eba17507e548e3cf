// The package's public API, held still: every runtime export of each entry in `exports` against
// test/public-api.json. Adding or removing one is a decision — make it, then record it there and in
// CHANGELOG.md (a removal or rename breaks users: under 0.x a minor version, later a major one).
import { readFileSync } from 'node:fs';
import * as assert from 'uvu/assert';
import * as root from '../ops/index.ts';
import * as nn from '../nn/index.ts';
import * as clip from '../clip/index.ts';
import * as bench from '../bench/public.ts';
import * as node from '../node/index.ts';
import { suite } from './harness.ts';

const test = suite('public API');
const ENTRIES: Record<string, object> = { clipgpu: root, 'clipgpu/nn': nn, 'clipgpu/clip': clip, 'clipgpu/bench': bench, 'clipgpu/node': node };
const recorded = JSON.parse(readFileSync('test/public-api.json', 'utf8')) as Record<string, string[]>;

test('each entry exports exactly the names recorded in test/public-api.json', () => {
  assert.equal(Object.keys(ENTRIES).sort(), Object.keys(recorded).sort(), 'the entries');
  for (const [entry, module] of Object.entries(ENTRIES)) {
    const names = Object.keys(module);
    const added = names.filter((n) => !recorded[entry].includes(n));
    const removed = recorded[entry].filter((n) => !names.includes(n));
    assert.ok(
      added.length === 0 && removed.length === 0,
      `${entry}: the public API changed (added: ${added.join(', ') || 'none'}; removed: ${removed.join(', ') || 'none'}); ` +
        'if meant, record it in test/public-api.json and CHANGELOG.md',
    );
  }
});

test.run();
