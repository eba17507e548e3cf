// Node-only file helpers shared by every layer that touches disk (safetensors, BPE vocabularies, images, tuning,
// run folders): bounded reads of regular files with errors that name the path and the reason, atomic writes
// that clean up after themselves, directories created without hanging, and a lock for a run folder.
import {
  closeSync, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, renameSync, statSync, unlinkSync,
  writeFileSync, writeSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

/** A file that cannot be read or written: the message names the path and the reason. */
export class FileError extends Error {
  override name = 'FileError';
}

const reason = (e: unknown) => (e as NodeJS.ErrnoException).code ?? (e as Error).message;

/**
 * A regular file's bytes, at most `maxBytes` of them; otherwise `error(message)` naming the path and why
 * (missing, a device or folder rather than a file, too large, an I/O error).
 */
export function readBytes(path: string | URL, error: new (message: string) => Error = FileError, maxBytes = Infinity): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new error(`${path}: cannot read (${reason(e)})`);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new error(`${path}: not a regular file`);
    if (stat.size > maxBytes) throw new error(`${path}: ${stat.size} bytes, over the limit of ${maxBytes}`);
    const bytes = new Uint8Array(stat.size);
    let at = 0;
    while (at < bytes.length) {
      const n = readSync(fd, bytes, at, bytes.length - at, at);
      if (n === 0) break;
      at += n;
    }
    return at === bytes.length ? bytes : bytes.subarray(0, at);
  } catch (e) {
    if (e instanceof error) throw e;
    throw new error(`${path}: cannot read (${reason(e)})`);
  } finally {
    closeSync(fd);
  }
}

/** The temporary name writeFileAtomic uses for `path` (recognised by removeStaleTemporaries). */
const temporaryName = (path: string) => join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
const TEMPORARY = /^\.(.+)\.(\d+)\.\d+\.tmp$/;

/**
 * Writes bytes to `path` atomically: a temporary file in the same folder, fsync, then rename over the target.
 * A crash leaves either the old file or the new one, never a torn one; a failed write (a full disk) removes
 * its temporary file and throws a FileError naming the path.
 */
export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  const tmp = temporaryName(path);
  let fd: number;
  try {
    fd = openSync(tmp, 'w');
  } catch (e) {
    throw new FileError(`${path}: cannot write (${reason(e)})`);
  }
  try {
    let written = 0;
    while (written < bytes.byteLength) written += writeSync(fd, bytes, written, bytes.byteLength - written);
    fsyncSync(fd);
    closeSync(fd);
  } catch (e) {
    closeSync(fd);
    unlinkSync(tmp);
    throw e instanceof FileError ? e : Object.assign(new FileError(`${path}: cannot write (${reason(e)})`), { cause: e });
  }
  try {
    renameSync(tmp, path);
  } catch (e) {
    unlinkSync(tmp);
    throw new FileError(`${path}: cannot write (${reason(e)})`);
  }
}

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** Deletes temporary files that writeFileAtomic left in `dir` when a process died mid-save; returns their names. */
export function removeStaleTemporaries(dir: string): string[] {
  const removed: string[] = [];
  for (const name of readdirSync(dir)) {
    const m = TEMPORARY.exec(name);
    if (m && !isAlive(Number(m[2]))) {
      unlinkSync(join(dir, name));
      removed.push(name);
    }
  }
  return removed;
}

/**
 * Creates `dir` and any missing parents one level at a time (Node's recursive mkdir loops forever under
 * /proc), failing with a FileError that names the first path that cannot be a folder.
 */
export function makeDirectory(dir: string): void {
  const missing: string[] = [];
  let at = resolve(dir);
  while (!existsSync(at)) {
    missing.unshift(at);
    const parent = dirname(at);
    if (parent === at) break;
    at = parent;
  }
  if (existsSync(at) && !statSync(at).isDirectory()) throw new FileError(`${at}: not a folder`);
  for (const path of missing) {
    try {
      mkdirSync(path);
    } catch (e) {
      throw new FileError(`${path}: cannot create the folder (${reason(e)})`);
    }
  }
}

/**
 * Takes `dir`'s lock file (`.lock`, holding this process's id) so that two processes never write one run
 * folder; a lock left by a process that no longer runs is taken over. Returns the function that releases it,
 * which also runs when the process exits.
 */
export function lockDirectory(dir: string, what = 'run folder'): () => void {
  const lock = join(dir, '.lock');
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new FileError(`${lock}: cannot create the lock (${reason(e)})`);
      const holder = Number(readFileSync(lock, 'utf8'));
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && isAlive(holder)) {
        throw new FileError(`${dir}: another process (pid ${holder}) is using this ${what}; wait for it or choose another folder`);
      }
      if (attempt > 0) throw new FileError(`${lock}: cannot take the lock`);
      unlinkSync(lock); // stale: its process is gone
    }
  }
  const release = () => {
    process.off('exit', release);
    try {
      if (Number(readFileSync(lock, 'utf8')) === process.pid) unlinkSync(lock);
    } catch {
      // already gone
    }
  };
  process.on('exit', release);
  return release;
}
