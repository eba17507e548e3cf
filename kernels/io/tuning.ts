// The tuning cache on disk (Node-only): one JSON file per user, the choices of every adapter + driver measured
// on this machine, in $XDG_CACHE_HOME/clipgpu/tuning.json (~/.cache by default; CLIPGPU_TUNING names another).
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { gpu } from '../../core/device.ts';
import { makeDirectory, writeFileAtomic } from '../../core/io/files.ts';
import { applyTuning, tuneAttention, tuneMatmul, tuneRows, type Tuning } from '../tune.ts';

export function tuningPath(): string {
  return process.env.CLIPGPU_TUNING ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'clipgpu', 'tuning.json');
}

function readCache(): Record<string, Tuning> {
  const path = tuningPath();
  if (!existsSync(path)) return {};
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, Tuning>;
  } catch {
    return {}; // an unreadable cache is measured again, not fatal
  }
}

/** The cached choices for this adapter, or null. */
export function cachedTuning(): Tuning | null {
  return readCache()[gpu().name] ?? null;
}

/** Measures this adapter's choices and writes them to the cache (replacing its previous entry). */
export async function tuneAndSave(log: (line: string) => void): Promise<Tuning> {
  const tuning = await tuneMatmul(gpu().name, log);
  tuning.rows = await tuneRows(log);
  tuning.attention = await tuneAttention(log);
  const cache = readCache();
  cache[gpu().name] = tuning;
  makeDirectory(dirname(tuningPath()));
  writeFileAtomic(tuningPath(), new TextEncoder().encode(JSON.stringify(cache, null, 1)));
  return tuning;
}

/**
 * Makes the engine use this adapter's measured choices: from the cache, or — the first time on an adapter,
 * unless CLIPGPU_TUNE=off — measured now (seconds) and cached. Without either, the fixed defaults stay.
 */
export async function useTuning(log: (line: string) => void = () => {}): Promise<Tuning | null> {
  const cached = cachedTuning();
  if (cached) return applyTuning(cached, gpu().name);
  if (process.env.CLIPGPU_TUNE === 'off') return null;
  log(`tuning the kernels for this adapter (once; cached in ${tuningPath()}; CLIPGPU_TUNE=off skips it)…`);
  return applyTuning(await tuneAndSave(() => {}), gpu().name);
}
