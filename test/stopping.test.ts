// Every way a user or a supervisor stops a run saves it, once, and exits non-zero: a group kill through npm
// (what `timeout`, systemd, containers and CI do), SIGTERM to npm alone, SIGHUP (the terminal closed), the
// launcher killed outright. A second, deliberate signal exits at once. Each test stops a real `npm run train`
// (npm → scripts/run.mjs → bin/clipgpu.ts train) or the bin under scripts/run.mjs.
import * as assert from 'uvu/assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensors } from '../nn/io/safetensors.ts';
import { checkpointInfo } from '../nn/checkpoint.ts';
import { suite } from './harness.ts';

const test = suite('stopping');
const tmp = (name: string) => mkdtempSync(join(tmpdir(), `${name}-`));

/** A tiny run's flags: long enough never to finish, evaluation and periodic saves off. */
const tinyFlags = (out: string, extra: string[] = []) => ['--model', 'ViT-tiny', '--batch-size', '8', '--steps', '5000', '--vocab-size', '600', '--eval-every', '0', '--save-every', '0', '--out', out, ...extra];
const npmTrain = (args: string[]) => ['npm', 'run', '--silent', '--ignore-scripts', 'train', '--', ...args];
const binTrain = (args: string[]) => [process.execPath, 'scripts/run.mjs', 'bin/clipgpu.ts', 'train', ...args];

interface Stopped {
  /** The launched process's exit code and signal (npm's, when launched through npm). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Launches `command` in its own process group and, in order, calls each action once its pattern appears in the
 * output; resolves when every process holding the output has exited (the trainer included, even when its
 * parents went first).
 */
function launch(command: string[], ...actions: [RegExp, (child: ChildProcess) => void][]): Promise<Stopped> {
  const child = spawn(command[0], command.slice(1), { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let exit: { code: number | null; signal: NodeJS.Signals | null } = { code: null, signal: null };
  const check = () => {
    while (actions.length && actions[0][0].test(stdout)) actions.shift()![1](child);
  };
  child.stdout!.on('data', (d) => {
    stdout += d;
    check();
  });
  child.stderr!.on('data', (d) => (stderr += d));
  child.on('exit', (code, signal) => (exit = { code, signal }));
  // A stop that never ends the run fails the test rather than hanging it.
  const guard = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 90_000);
  return new Promise((resolve) => child.on('close', () => {
    clearTimeout(guard);
    resolve({ ...exit, stdout, stderr });
  }));
}

/** The line the trainer prints once it is past every check: a stop from then on ends a step and saves. */
const TRAINING = /^model ViT-tiny, batch 8/m;

/** The step of the checkpoint in `out`, after checking the run's lock was released. */
function savedStep(out: string): number {
  assert.not.ok(existsSync(join(out, '.lock')), 'the lock is released');
  assert.ok(existsSync(join(out, 'checkpoint.safetensors')), 'a checkpoint was saved');
  return checkpointInfo(readSafetensors(join(out, 'checkpoint.safetensors')), 'checkpoint').step;
}

/** Sends `signal` to the process group led by `pid` (which may have ended meanwhile). */
const killGroup = (pid: number, signal: NodeJS.Signals) => {
  try {
    process.kill(-pid, signal);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
  }
};

test('a group kill through npm (kill -TERM -- -PGID), repeated as forwarders repeat it, saves once and exits non-zero', async () => {
  const out = tmp('group-kill');
  // The second group SIGTERM, 100 ms on, stands for the copies forwarding parents (scripts/run.mjs, npm, an init
  // or supervisor) deliver a little later: the same stop, not a second one.
  const r = await launch(npmTrain(tinyFlags(out)), [
    TRAINING,
    (child) => {
      killGroup(child.pid!, 'SIGTERM');
      setTimeout(() => killGroup(child.pid!, 'SIGTERM'), 100);
    },
  ]);
  assert.ok(r.code !== 0, `npm exited ${r.code} ${r.signal}`);
  const stopped = /stopped at step (\d+) of 5000: saved .*checkpoint\.safetensors; continue with --resume/.exec(r.stderr);
  assert.ok(stopped, r.stderr);
  assert.not.match(r.stderr, /again: exiting without saving/);
  // One stop, heard once: SIGTERM, or under load the SIGHUP run.mjs sends when npm's shell has gone, which the
  // kernel may deliver first (the lower-numbered of two pending signals goes first).
  assert.is(r.stdout.match(/finishing this step/g)?.length, 1, r.stdout);
  assert.match(r.stdout, /(SIGTERM|SIGHUP): finishing this step/);
  assert.is(savedStep(out), Number(stopped![1]));
});

test('SIGTERM to npm alone: the trainer hears that its parents exited, saves and stops', async () => {
  const out = tmp('npm-alone');
  const r = await launch(npmTrain(tinyFlags(out)), [TRAINING, (child) => child.kill('SIGTERM')]);
  assert.match(r.stdout, /(SIGHUP|the parent process \(pid \d+\) exited): finishing this step/);
  assert.ok(savedStep(out) >= 1);
});

test('SIGHUP (the terminal closed) saves and exits 129; killing the launcher outright saves too', async () => {
  const hup = tmp('sighup');
  const r = await launch(binTrain(tinyFlags(hup)), [TRAINING, (child) => process.kill(-child.pid!, 'SIGHUP')]);
  assert.is(r.code, 129, r.stderr);
  assert.match(r.stderr, /stopped at step \d+ of 5000: saved/);
  assert.ok(savedStep(hup) >= 1);
  // scripts/run.mjs killed with SIGKILL: nothing forwards a signal; the trainer notices its parent is gone.
  const orphan = tmp('orphan');
  const o = await launch(binTrain(tinyFlags(orphan)), [TRAINING, (child) => child.kill('SIGKILL')]);
  assert.match(o.stdout, /the parent process \(pid \d+\) exited: finishing this step/);
  assert.ok(savedStep(orphan) >= 1);
});

test('a run started from a shell in the background outlives the shell (only a launcher\'s exit stops it)', async () => {
  const out = tmp('background');
  const log = join(out, 'log.txt');
  const flags = tinyFlags(out).map((a, i, all) => (all[i - 1] === '--steps' ? '10' : a));
  // `sh -c '… &'` exits at once: the run's parent is gone, as after `&` and closing a shell that does not hang up.
  const env = { ...process.env };
  delete env.npm_lifecycle_event; // not started by npm here, even when this suite runs under `npm test`
  const sh = spawnSync('sh', ['-c', `${binTrain(flags).map((a) => `'${a}'`).join(' ')} > '${log}' 2>&1 &`], { env });
  assert.is(sh.status, 0);
  for (let waited = 0; !existsSync(join(out, 'model.safetensors')) && waited < 90_000; waited += 250) await new Promise((r) => setTimeout(r, 250));
  for (let waited = 0; existsSync(join(out, '.lock')) && waited < 10_000; waited += 250) await new Promise((r) => setTimeout(r, 250));
  assert.is(savedStep(out), 10, readFileSync(log, 'utf8'));
});

test('a second SIGINT, after the window that merges repeats of the first, exits at once without saving', async () => {
  const out = tmp('sigint2');
  // The first SIGINT lands during an evaluation (about a second here), which the second one interrupts.
  const flags = tinyFlags(out).map((a, i, all) => (all[i - 1] === '--eval-every' ? '10' : a));
  // Repeats of one stop are merged for 200 ms here (1 s by default); the second goes 400 ms after the trainer
  // said it heard the first: not a repeat, and while the evaluation still runs.
  const command = ['env', 'CLIPGPU_STOP_REPEAT_MS=200', ...binTrain(flags)];
  const r = await launch(command, [/step 10\/5000/, (child) => child.kill('SIGINT')], [/SIGINT: finishing this step/, (child) => setTimeout(() => child.kill('SIGINT'), 400)]);
  assert.is(r.code, 130, r.stderr);
  assert.match(r.stderr, /SIGINT again: exiting without saving/);
  assert.not.ok(existsSync(join(out, 'checkpoint.safetensors')), 'nothing was saved');
});

test('a SIGINT during an evaluation saves the step the evaluation followed, not one more', async () => {
  const out = tmp('sigint-eval');
  const flags = tinyFlags(out).map((a, i, all) => (all[i - 1] === '--eval-every' ? '10' : a));
  // "step 10/5000" is printed just before the evaluation after step 10 starts.
  const r = await launch(binTrain(flags), [/step 10\/5000/, (child) => child.kill('SIGINT')]);
  assert.is(r.code, 130, r.stderr);
  assert.is(savedStep(out), 10, r.stderr);
});

test.run();
