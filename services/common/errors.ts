/**
 * Domain errors shared by every service. Each maps to one gRPC status code in
 * grpc-status.ts; services throw these, never raw status objects.
 */

/** Bad input from a client. `fieldPath` names the offending field, e.g. `stages[1].needs[0]`. */
export class InvalidArgumentError extends Error {
  override readonly name = 'InvalidArgumentError';
  constructor(
    message: string,
    readonly fieldPath: string,
    options?: ErrorOptions,
  ) {
    super(fieldPath ? `${fieldPath}: ${message}` : message, options);
  }
}

/** A named thing (pipeline, run, node) does not exist. */
export class NotFoundError extends Error {
  override readonly name = 'NotFoundError';
  constructor(
    readonly kind: string,
    readonly id: string,
    options?: ErrorOptions,
  ) {
    super(`${kind} "${id}" not found`, options);
  }
}

/** The thing being created already exists. */
export class AlreadyExistsError extends Error {
  override readonly name = 'AlreadyExistsError';
}

/** The request is valid but the system is not in a state to carry it out. */
export class FailedPreconditionError extends Error {
  override readonly name = 'FailedPreconditionError';
}

/** A bounded resource (buffer, queue, size) is exhausted. */
export class ResourceExhaustedError extends Error {
  override readonly name = 'ResourceExhaustedError';
}

/** The service is shutting down or a dependency cannot be reached; retrying may help. */
export class UnavailableError extends Error {
  override readonly name = 'UnavailableError';
}

/** The RPC exists in the contract but this release does not implement it yet. */
export class UnimplementedError extends Error {
  override readonly name = 'UnimplementedError';
  constructor(readonly method: string) {
    super(`${method} is not implemented in this release`);
  }
}

/** Configuration is missing or malformed; `key` names the setting. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    message: string,
    readonly key: string,
    options?: ErrorOptions,
  ) {
    super(`${key}: ${message}`, options);
  }
}
