import { randomUUID } from 'node:crypto';
import { InvalidArgumentError, NotFoundError } from '../common/errors.js';
import { bidiStream, unary } from '../common/handlers.js';
import type { ServiceRegistration } from '../common/grpc-server.js';
import type { Logger } from '../common/logger.js';
import {
  CoordinatorService as CoordinatorDefinition,
  SERVICE_NAMES,
  type ConnectRequest,
  type ConnectResponse,
  type CoordinatorServer,
} from '../common/proto.js';
import type { Coordinator, NodeSession } from './coordinator.js';

/** Most stages one worker may offer to run at once. */
const MAX_CAPACITY = 10_000;

/** Largest task batch EnqueueTasks accepts in one call. */
const MAX_ENQUEUE = 10_000;

/** A worker's Connect stream as the coordinator reads and writes it: the gRPC call, or connectInProcess's. */
export interface ConnectCall {
  write(message: ConnectResponse): unknown;
  on(event: 'data', listener: (message: ConnectRequest) => void): unknown;
  once(event: 'end', listener: () => void): unknown;
  once(event: 'error', listener: (err: Error) => void): unknown;
}

/** Runs one worker's Connect stream: hello first, then credits, heartbeats and outcomes. */
export async function serveConnect(coordinator: Coordinator, call: ConnectCall, signal: AbortSignal): Promise<void> {
  let session: NodeSession | undefined;
  const onMessage = (message: ConnectRequest) => {
    if (!session) {
      if (!message.hello) throw new InvalidArgumentError('the first message on Connect must be hello', 'hello');
      const { hello } = message;
      if (hello.frameworks.length === 0) throw new InvalidArgumentError('a worker must advertise at least one framework', 'hello.frameworks');
      if (hello.capacity < 1 || hello.capacity > MAX_CAPACITY) throw new InvalidArgumentError(`capacity must be between 1 and ${MAX_CAPACITY}`, 'hello.capacity');
      session = {
        nodeId: hello.nodeId || `node-${randomUUID().slice(0, 8)}`,
        frameworks: new Set(hello.frameworks),
        capacity: hello.capacity,
        credits: 0,
        draining: false,
        connectedAt: new Date(),
        labels: hello.labels,
        send: (m) => call.write(m),
      };
      call.write({ welcome: { nodeId: session.nodeId, leaseTtlMs: coordinator.leaseTtlMs, heartbeatIntervalMs: coordinator.heartbeatIntervalMs } });
      coordinator.connect(session);
    } else if (message.credits) {
      coordinator.grantCredits(session.nodeId, message.credits.credits);
    } else if (message.heartbeat) {
      coordinator.heartbeat(session.nodeId, message.heartbeat.attemptIds);
    } else if (message.outcomes) {
      coordinator.receiveOutcomes(session.nodeId, message.outcomes.outcomes);
    }
  };
  try {
    // Events rather than for-await: the async iterator would destroy the call
    // when the worker half-closes, and the final status would never be sent.
    await new Promise<void>((resolve, reject) => {
      call.on('data', (message: ConnectRequest) => {
        try {
          onMessage(message);
        } catch (err) {
          reject(err);
        }
      });
      call.once('end', resolve);
      call.once('error', reject);
      signal.addEventListener('abort', () => resolve(), { once: true });
    });
  } finally {
    if (session) coordinator.disconnect(session.nodeId, signal.aborted ? 'stream cancelled' : 'stream closed', session);
  }
}

/** The coordinator service: worker streams, task intake from the scheduler, node listing. */
export function createCoordinatorService(logger: Logger, coordinator: Coordinator): ServiceRegistration {
  const implementation: Partial<CoordinatorServer> = {
    connect: bidiStream(logger, (call, signal) => serveConnect(coordinator, call, signal)),
    enqueueTasks: unary(logger, async (request) => {
      if (request.tasks.length > MAX_ENQUEUE) throw new InvalidArgumentError(`at most ${MAX_ENQUEUE} tasks per call`, 'tasks');
      request.tasks.forEach((t, i) => {
        if (!t.attemptId) throw new InvalidArgumentError('attempt_id is required', `tasks[${i}].attempt_id`);
        if (!t.framework) throw new InvalidArgumentError('framework is required', `tasks[${i}].framework`);
      });
      const { accepted, refused } = coordinator.enqueue(request.tasks);
      return { accepted, refusedAttemptIds: refused, coordinatorId: coordinator.instanceId };
    }),
    cancelTasks: unary(logger, async (request) => coordinator.cancelRuns(request.runIds, request.reason || 'run cancelled')),
    listNodes: unary(logger, async () => ({ nodes: coordinator.nodes() })),
    listFrameworks: unary(logger, async () => ({ frameworks: coordinator.frameworks() })),
    drainNode: unary(logger, async (request) => {
      if (!coordinator.drain(request.nodeId)) throw new NotFoundError('node', request.nodeId);
      return { node: coordinator.nodes().find((n) => n.nodeId === request.nodeId) };
    }),
  };
  return { name: SERVICE_NAMES.coordinator, definition: CoordinatorDefinition, implementation };
}
