// How a command-line run hears that it should stop (Node-only). Every way a user or a supervisor stops a run
// asks it to finish its step and save: SIGINT (Ctrl-C), SIGTERM (kill, timeout, systemd, docker stop,
// `kill -- -PGID`), SIGHUP (the terminal closed), and the launcher exiting (npm, npx or scripts/run.mjs killed
// alone, which would otherwise leave this process training on, orphaned, holding its lock). A parent that is
// none of those is a shell, which a run started with `&` or disowned is meant to outlive.
//
// One stop often arrives several times: a group kill reaches this process and every parent that forwards
// it (scripts/run.mjs, npm), so the same request lands two or three times within milliseconds. Signals within
// REPEAT_MS of the first are that same request; a signal after that is a second, deliberate one, and exits
// at once without saving.
import { constants } from 'node:os';

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
/**
 * Repeats of one stop (a group kill plus forwarding parents) arrive within this many milliseconds of each other;
 * CLIPGPU_STOP_REPEAT_MS sets another window (the tests shorten it so a deliberate second signal lands while a
 * short run still has work left).
 */
const REPEAT_MS = Number(process.env.CLIPGPU_STOP_REPEAT_MS) > 0 ? Number(process.env.CLIPGPU_STOP_REPEAT_MS) : 1000;
/** How often the launcher is looked for (process.ppid changes when it exits and this process is adopted). */
const PARENT_POLL_MS = 500;

export interface StopRequests {
  /** Why a stop was asked for, or null while none was. */
  reason(): string | null;
  /** The exit code of a run stopped on request: 128 + the signal's number (SIGHUP's when the parent exited). */
  exitCode(): number;
}

/**
 * Starts listening for stop requests: `notice` hears the first one; a second, deliberate signal exits at once
 * with its code. Output that has gone (a closed terminal: EIO; a dead
 * parent's pipe: EPIPE) is ignored from here on, so that writing a progress line never kills a run before it
 * saves.
 */
export function watchStopRequests(tool: string, notice: (line: string) => void): StopRequests {
  let reason: string | null = null;
  let code = 0;
  let first = 0;
  const request = (why: string, signal: (typeof SIGNALS)[number]) => {
    if (reason === null) {
      reason = why;
      code = 128 + constants.signals[signal];
      first = Date.now();
      notice(`${why}: finishing this step, then saving a checkpoint (another signal, a second from now or later, exits at once without saving)`);
    }
  };
  for (const signal of SIGNALS) {
    process.on(signal, () => {
      if (reason !== null && Date.now() - first > REPEAT_MS) {
        console.error(`\n${tool}: ${signal} again: exiting without saving`);
        process.exit(128 + constants.signals[signal]);
      }
      request(signal, signal);
    });
  }
  const parent = process.ppid;
  if (process.env.CLIPGPU_LAUNCHER_PID === String(parent) || process.env.npm_lifecycle_event !== undefined) {
    const poll = setInterval(() => {
      if (process.ppid === parent) return;
      clearInterval(poll);
      request(`the parent process (pid ${parent}) exited`, 'SIGHUP');
    }, PARENT_POLL_MS);
    poll.unref();
  }
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE' && e.code !== 'EIO') throw e;
    });
  }
  return { reason: () => reason, exitCode: () => code };
}
