// A training run's folder (Node-only): where its files live, and the rules that keep a user's work safe —
// the folder is created without hanging and locked against a second process; a folder that holds another run
// is never overwritten unless asked; --resume needs a checkpoint; temporary files of a crashed save are removed;
// on resume the metrics are cut back to the checkpoint's step, so no row is duplicated and the plots keep the
// whole history.
import { appendFileSync, existsSync, readFileSync, readdirSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileError, lockDirectory, makeDirectory, removeStaleTemporaries, writeFileAtomic } from '../../core/io/files.ts';

export interface RunFolder {
  dir: string;
  checkpoint: string;
  model: string;
  vocab: string;
  metrics: string;
  lossPlot: string;
  evalPlot: string;
  /** Deletes the previous run's files (--overwrite), once everything the new run needs has been checked. */
  replacePrevious(): void;
  /** Releases the folder's lock (also done when the process exits); a folder this run created and left empty goes too. */
  release(): void;
}

/** The files a run writes; any of them in a folder means the folder holds a run. */
const RUN_FILES = ['checkpoint.safetensors', 'model.safetensors', 'vocab.txt.gz', 'metrics.jsonl', 'loss.svg', 'accuracy.svg'];

/**
 * Opens `dir` for a run: creates and locks it, removes what crashed saves left, and checks it against the
 * intent: a new run needs a folder without another run's files (or `overwrite`: they are deleted by
 * replacePrevious, once the new run's inputs have been checked), a resumed one needs its checkpoint. `log`
 * hears what was cleaned up.
 */
export function openRunFolder(dir: string, { resume, overwrite, log }: { resume: boolean; overwrite: boolean; log: (line: string) => void }): RunFolder {
  const created = !existsSync(dir);
  makeDirectory(dir);
  const unlock = lockDirectory(dir);
  const release = () => {
    unlock();
    if (created && readdirSync(dir).length === 0) rmdirSync(dir);
  };
  try {
    for (const name of removeStaleTemporaries(dir)) log(`removed ${join(dir, name)}, left by a save that did not finish`);
    const folder = {
      dir,
      checkpoint: join(dir, 'checkpoint.safetensors'),
      model: join(dir, 'model.safetensors'),
      vocab: join(dir, 'vocab.txt.gz'),
      metrics: join(dir, 'metrics.jsonl'),
      lossPlot: join(dir, 'loss.svg'),
      evalPlot: join(dir, 'accuracy.svg'),
      replacePrevious: () => {
        if (resume || existing.length === 0) return;
        for (const f of existing) unlinkSync(join(dir, f));
        log(`--overwrite: removed the previous run's ${existing.join(', ')} from ${dir}`);
      },
      release,
    };
    const existing = RUN_FILES.filter((f) => existsSync(join(dir, f)));
    if (resume) {
      if (!existsSync(folder.checkpoint)) {
        const what = existing.length
          ? `holds a run that saved no checkpoint (${existing.join(', ')}): pass --overwrite instead of --resume to start it again`
          : `so there is nothing to resume (train without --resume to start a run in ${dir})`;
        throw new FileError(`--resume: ${folder.checkpoint} does not exist, ${what}`);
      }
    } else if (existing.length > 0 && !overwrite) {
      const next = existing.includes('checkpoint.safetensors')
        ? 'pass --resume to continue it, --overwrite to replace it'
        : 'it saved no checkpoint to resume: pass --overwrite to replace it';
      throw new FileError(`--out ${dir} already holds a run (${existing.join(', ')}): ${next}, or choose another --out`);
    }
    return folder;
  } catch (e) {
    release();
    throw e;
  }
}

/** One record of metrics.jsonl: a training step's numbers, or an evaluation's. */
export type MetricsRecord = { step: number; loss?: number; eval?: unknown } & Record<string, unknown>;

/**
 * The metrics of a resumed run up to `step`: records after it (written after the checkpoint, before the run
 * stopped) are dropped from the file, which is rewritten atomically; unreadable lines are dropped and counted.
 */
export function resumeMetrics(path: string, step: number, log: (line: string) => void): MetricsRecord[] {
  if (!existsSync(path)) return [];
  const kept: MetricsRecord[] = [];
  let dropped = 0;
  let unreadable = 0;
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    let record: MetricsRecord;
    try {
      record = JSON.parse(line) as MetricsRecord;
    } catch {
      unreadable++;
      continue;
    }
    if (typeof record?.step !== 'number') unreadable++;
    else if (record.step > step) dropped++;
    else kept.push(record);
  }
  writeFileAtomic(path, new TextEncoder().encode(kept.map((r) => `${JSON.stringify(r)}\n`).join('')));
  if (dropped) log(`${path}: dropped ${dropped} records after step ${step} (written after the checkpoint)`);
  if (unreadable) log(`${path}: dropped ${unreadable} unreadable lines`);
  return kept;
}

/** Appends one record to metrics.jsonl. */
export function appendMetrics(path: string, record: MetricsRecord): void {
  appendFileSync(path, `${JSON.stringify(record)}\n`);
}

/** Starts metrics.jsonl empty. */
export function startMetrics(path: string): void {
  writeFileSync(path, '');
}
