/** Exit codes of every stagemesh command. */
export const ExitCode = {
  OK: 0,
  /** The run failed, the pipeline has findings, or the mesh refused the request. */
  FAILED: 1,
  /** Bad flags or arguments, or an unreadable file. */
  USAGE: 2,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** An error that ends a command with a message (no stack) and an exit code. */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    message: string,
    readonly exitCode: ExitCode = ExitCode.FAILED,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
