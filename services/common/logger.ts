import { pino, type Logger } from 'pino';
import { logTraceFields } from './telemetry.js';

export type { Logger } from 'pino';

/** Log levels accepted by the configuration. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Creates the structured (JSON) logger of a process. Logs go to standard error
 * so standard output stays for what a user asked a command to print.
 */
export function createLogger(options: { level?: LogLevel; name?: string } = {}): Logger {
  // With tracing on, a line written inside a span names its trace_id and span_id.
  return pino({ name: options.name ?? 'stagemesh', level: options.level ?? 'info', mixin: logTraceFields }, pino.destination(2));
}
