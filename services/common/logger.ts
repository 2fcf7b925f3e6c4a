import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/** Log levels accepted by the configuration. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Creates the structured (JSON) logger of a process. Logs go to standard error
 * so standard output stays for what a user asked a command to print.
 */
export function createLogger(options: { level?: LogLevel; name?: string } = {}): Logger {
  return pino({ name: options.name ?? 'stagemesh', level: options.level ?? 'info' }, pino.destination(2));
}
