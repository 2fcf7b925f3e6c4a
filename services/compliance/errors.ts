/**
 * Errors of the compliance service. The service turns them into gRPC
 * statuses at its boundary (a PolicyError is INVALID_ARGUMENT).
 */

/** A policy document or message is malformed. `fieldPath` names the offending key, e.g. `weights.COF99`. */
export class PolicyError extends Error {
  override readonly name = 'PolicyError';
  constructor(
    /** What is wrong, without the path. */
    readonly reason: string,
    readonly fieldPath: string,
    options?: ErrorOptions,
  ) {
    super(`${fieldPath}: ${reason}`, options);
  }
}
