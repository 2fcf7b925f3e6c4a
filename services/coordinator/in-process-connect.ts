import { EventEmitter } from 'node:events';
import type { ConnectStream } from '../worker/worker.js';
import type { Coordinator } from './coordinator.js';
import { serveConnect } from './coordinator-service.js';

/**
 * A worker's Connect stream to a coordinator in the same process (the
 * embedded mesh's own worker): the messages and the session logic are those
 * of the gRPC stream (serveConnect), but they are handed over as objects,
 * with no serialisation and no HTTP/2 in between. Each message arrives in a
 * later microtask, in the order written, as from a stream. The stream ends
 * like a gRPC call: `error` when the coordinator refused it, then `status`
 * and `close`. Workers in other processes connect over gRPC.
 */
export function connectInProcess(coordinator: Coordinator): ConnectStream {
  const toWorker = new EventEmitter();
  const toCoordinator = new EventEmitter();
  let ended = false;
  let closed = false;
  const later = (emit: () => void) => queueMicrotask(emit);
  const finish = (err?: unknown) =>
    later(() => {
      if (closed) return;
      closed = true;
      if (err) toWorker.emit('error', err);
      toWorker.emit('status');
      toWorker.emit('close');
    });
  serveConnect(
    coordinator,
    {
      write: (message) => later(() => closed || toWorker.emit('data', message)),
      on: toCoordinator.on.bind(toCoordinator),
      once: toCoordinator.once.bind(toCoordinator),
    },
    new AbortController().signal,
  ).then(() => finish(), finish);
  return {
    write: (message) => later(() => ended || toCoordinator.emit('data', message)),
    end: () => {
      ended = true;
      later(() => toCoordinator.emit('end'));
    },
    on: toWorker.on.bind(toWorker),
    once: toWorker.once.bind(toWorker),
  };
}
