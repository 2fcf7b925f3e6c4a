import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  ResourceExhaustedError,
  UnavailableError,
  UnimplementedError,
} from './errors.js';

/** Metadata key carrying the field path of an INVALID_ARGUMENT status. */
export const FIELD_PATH_METADATA = 'stagemesh-field-path';

/** True when `err` already carries a gRPC status code (e.g. an error from a client call). */
export function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number';
}

function statusError(code: status, message: string, cause: unknown, metadata = new Metadata()): ServiceError {
  const error = new Error(message, { cause }) as ServiceError;
  error.code = code;
  error.details = message;
  error.metadata = metadata;
  return error;
}

/**
 * The single error boundary of every gRPC server: maps any error to a gRPC
 * status. Already-mapped errors pass through; the original error becomes
 * `cause`; unknown errors become INTERNAL and are logged.
 */
export function toServiceError(err: unknown, logger?: Logger): ServiceError {
  if (isServiceError(err)) return err;
  if (err instanceof InvalidArgumentError) {
    const metadata = new Metadata();
    if (err.fieldPath) metadata.set(FIELD_PATH_METADATA, err.fieldPath);
    return statusError(status.INVALID_ARGUMENT, err.message, err, metadata);
  }
  if (err instanceof NotFoundError) return statusError(status.NOT_FOUND, err.message, err);
  if (err instanceof AlreadyExistsError) return statusError(status.ALREADY_EXISTS, err.message, err);
  if (err instanceof FailedPreconditionError) return statusError(status.FAILED_PRECONDITION, err.message, err);
  if (err instanceof ResourceExhaustedError) return statusError(status.RESOURCE_EXHAUSTED, err.message, err);
  if (err instanceof UnavailableError) return statusError(status.UNAVAILABLE, err.message, err);
  if (err instanceof UnimplementedError) return statusError(status.UNIMPLEMENTED, err.message, err);
  logger?.error({ err }, 'unhandled error in RPC handler');
  return statusError(status.INTERNAL, 'internal error', err);
}
