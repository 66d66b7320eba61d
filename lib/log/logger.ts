import pino, { type Logger } from 'pino';
import { redact, scrubText } from './redact';

export type { Logger };

/**
 * Where log lines go: AIGW_LOG_FILE, else stdout. Kong copies a server's stdout into its
 * error log at INFO level, which Kong's default `log_level = notice` hides; a file avoids that.
 */
function defaultDestination(): pino.DestinationStream {
  const file = process.env.AIGW_LOG_FILE;
  if (file) return pino.destination({ dest: file, mkdir: true, sync: false });
  stdoutDestination = pino.destination({ dest: 1, sync: false });
  return stdoutDestination;
}

let stdoutDestination: ReturnType<typeof pino.destination> | undefined;

/**
 * Drops the log lines still buffered for stdout, for a process whose reader is gone (its
 * parent died): at exit, pino flushes synchronously, and sonic-boom retries a write to a dead
 * pipe or socket forever, so the process would never exit.
 */
export function abandonStdoutLog(): void {
  stdoutDestination?.destroy();
}

/**
 * The one root logger: JSON lines, level from AIGW_LOG_LEVEL (default info).
 * Every line passes through `redact`, so a secret that slips into a log call is masked.
 */
export function createLogger(options: { level?: string; destination?: pino.DestinationStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env.AIGW_LOG_LEVEL ?? 'info',
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        log: (obj) => redact(obj) as Record<string, unknown>,
      },
      hooks: {
        logMethod(args, method) {
          const scrubbed = args.map((a) => (typeof a === 'string' ? scrubText(a) : a)) as typeof args;
          method.apply(this, scrubbed);
        },
      },
      // Errors skip `formatters.log` (pino serializes them later): scrub them here.
      serializers: { err: (err) => redact(pino.stdSerializers.err(err)) },
    },
    options.destination ?? defaultDestination(),
  );
}

let root: Logger | undefined;

export function rootLogger(): Logger {
  root ??= createLogger();
  return root;
}

export function setRootLogger(logger: Logger): void {
  root = logger;
}
