/**
 * The benchmarks' child processes (scripts/bench/*-process.ts: mocks, the dev gateway), each
 * driven over its IPC channel: a `start` message answered by `ready`, questions answered by
 * one message each, and `close`.
 */
import { type ChildProcess, fork } from 'node:child_process';
import path from 'node:path';

export type Message = { type: string } & Record<string, unknown>;

/** Forks `script` (a file of this folder, as built), sends `start` and waits for its `ready`. */
export function forkChild(
  script: string,
  start: object,
): Promise<{ child: ChildProcess; ready: Record<string, unknown> }> {
  const child = fork(path.join(__dirname, script), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) =>
      reject(new Error(`${script} exited with ${code} before it was ready`));
    child.once('exit', onExit);
    child.once('message', (msg: Record<string, unknown>) => {
      child.off('exit', onExit);
      if (msg['type'] === 'ready') resolve({ child, ready: msg });
      else reject(new Error(`${script}: ${String(msg['message'])}`));
    });
    child.send(start);
  });
}

/** Sends one message and resolves with the child's next message (its answer). */
export function ask(child: ChildProcess, message: Message): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    child.once('message', (msg: Record<string, unknown>) => resolve(msg));
    child.send(message);
  });
}

/** Asks the child to close and waits for its exit (killed after 15 s). */
export function closeChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    if (child.connected) child.send({ type: 'close' });
    else child.kill('SIGTERM');
  });
}
