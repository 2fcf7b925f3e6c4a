import { credentials } from '@grpc/grpc-js';
import { GrpcServer } from '../common/grpc-server.js';
import { createLogger } from '../common/logger.js';
import { EventBusClient } from '../common/proto.js';
import { createEventBusService } from './event-bus-service.js';
import type { EventLog } from './event-log.js';
import { MemoryEventLog } from './memory-event-log.js';

/** An event-bus service on a free loopback port, for tests. */
export interface TestEventBus {
  address: string;
  client: EventBusClient;
  log: EventLog;
  /** Stops the server, closes the client and the log; safe to call twice. */
  stop(): Promise<void>;
}

/** Starts the event-bus service alone over `log` (default: a fresh in-process log) on 127.0.0.1:0. */
export async function startTestEventBus(log: EventLog = new MemoryEventLog()): Promise<TestEventBus> {
  const logger = createLogger({ level: 'silent' });
  const server = await GrpcServer.start({ host: '127.0.0.1', port: 0, logger, services: [createEventBusService(logger, log)], shutdownTimeoutMs: 1_000 });
  const address = `127.0.0.1:${server.port}`;
  const client = new EventBusClient(address, credentials.createInsecure());
  let stopping: Promise<void> | undefined;
  return {
    address,
    client,
    log,
    stop: () =>
      (stopping ??= (async () => {
        client.close();
        server.forceStop();
        await server.stop();
        await log.close();
      })()),
  };
}
