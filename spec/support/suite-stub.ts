import { Registry } from 'prom-client';
import type { Suite } from '../../lib/kong/plugin';
import { type CapturedLog, captureLogger } from './suite';

export interface SuiteStub {
  suite: Suite;
  log: CapturedLog;
  metrics: Registry;
  /** Runs the close hooks, as the suite server does when it closes. */
  close(): Promise<void>;
}

/** What ai-metrics' sinks and tracers use of a suite: its logger, its metrics and its close hook. */
export function suiteStub(): SuiteStub {
  const log = captureLogger();
  const metrics = new Registry();
  const hooks: Array<() => Promise<void> | void> = [];
  const suite = { logger: log.logger, metrics, onClose: (fn: () => void) => void hooks.push(fn) };
  return {
    suite: suite as unknown as Suite,
    log,
    metrics,
    close: async () => {
      await Promise.all(hooks.map((h) => h()));
    },
  };
}

/** Stubs made by a test file, all closed after each test. */
export function suiteStubs(): () => SuiteStub {
  let made: SuiteStub[] = [];
  afterEach(async () => {
    await Promise.all(made.map((s) => s.close()));
    made = [];
  });
  return () => {
    const s = suiteStub();
    made.push(s);
    return s;
  };
}
