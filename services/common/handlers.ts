import type {
  handleBidiStreamingCall,
  handleClientStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
  ServerDuplexStream,
  ServerReadableStream,
  ServerUnaryCall,
  ServerWritableStream,
} from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { toServiceError } from './grpc-status.js';

/**
 * Adapts an async function to a grpc-js unary handler. Errors go through the
 * one error boundary (toServiceError); `signal` aborts when the client cancels.
 */
export function unary<Req, Res>(
  logger: Logger,
  fn: (request: Req, signal: AbortSignal, call: ServerUnaryCall<Req, Res>) => Promise<Res>,
): handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const controller = new AbortController();
    let answered = false;
    // grpc-js reports 'cancelled' after every answered call too: only a cancel
    // before the answer stops the work (an abort costs an exception object).
    call.once('cancelled', () => answered || controller.abort());
    fn(call.request, controller.signal, call).then(
      (response) => {
        answered = true;
        callback(null, response);
      },
      (err: unknown) => {
        answered = true;
        callback(toServiceError(err, logger));
      },
    );
  };
}

/** Adapts an async function that writes to the stream to a server-streaming handler. */
export function serverStream<Req, Res>(
  logger: Logger,
  fn: (request: Req, write: (message: Res) => Promise<void>, signal: AbortSignal) => Promise<void>,
): handleServerStreamingCall<Req, Res> {
  return (call: ServerWritableStream<Req, Res>) => {
    const controller = new AbortController();
    call.once('cancelled', () => controller.abort());
    call.once('close', () => controller.abort());
    const write = (message: Res) =>
      new Promise<void>((resolve) => {
        // Respect back-pressure: wait for drain when the transport buffer is full,
        // but not past the end of the call (a gone client never drains).
        if (call.write(message) || controller.signal.aborted) return resolve();
        const done = () => {
          call.off('drain', done);
          controller.signal.removeEventListener('abort', done);
          resolve();
        };
        call.once('drain', done);
        controller.signal.addEventListener('abort', done, { once: true });
      });
    fn(call.request, write, controller.signal).then(
      () => call.end(),
      (err: unknown) => {
        // grpc-js turns an 'error' event into the call's status (destroy() would skip it).
        if (!controller.signal.aborted) call.emit('error', toServiceError(err, logger));
      },
    );
  };
}

/** Adapts an async function consuming the request stream to a client-streaming handler. */
export function clientStream<Req, Res>(
  logger: Logger,
  fn: (requests: AsyncIterable<Req>, signal: AbortSignal) => Promise<Res>,
): handleClientStreamingCall<Req, Res> {
  return (call: ServerReadableStream<Req, Res>, callback) => {
    const controller = new AbortController();
    call.once('cancelled', () => controller.abort());
    fn(call as AsyncIterable<Req>, controller.signal).then(
      (response) => callback(null, response),
      (err: unknown) => callback(toServiceError(err, logger)),
    );
  };
}

/** Adapts a function owning a bidirectional stream; errors end the stream with a mapped status. */
export function bidiStream<Req, Res>(
  logger: Logger,
  fn: (call: ServerDuplexStream<Req, Res>, signal: AbortSignal) => Promise<void>,
): handleBidiStreamingCall<Req, Res> {
  return (call) => {
    const controller = new AbortController();
    call.once('cancelled', () => controller.abort());
    call.once('close', () => controller.abort());
    fn(call, controller.signal).then(
      () => call.end(),
      (err: unknown) => {
        if (!controller.signal.aborted) call.emit('error', toServiceError(err, logger));
      },
    );
  };
}
