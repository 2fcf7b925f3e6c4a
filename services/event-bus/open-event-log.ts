import type { MeshConfig } from '../common/config.js';
import type { EventLog } from './event-log.js';
import { JetStreamEventLog, type JetStreamEventLogOptions } from './jetstream-event-log.js';
import { MemoryEventLog, type MemoryEventLogOptions } from './memory-event-log.js';

/** Settings that pick and reach an event-log backend. */
export type EventLogConfig = Pick<MeshConfig, 'eventBus' | 'natsUrl'> & Partial<Pick<MeshConfig, 'natsStream' | 'natsSubjectPrefix'>>;

/**
 * Opens the event log the configuration names: `memory` (in-process, the
 * embedded profile's default) or `jetstream` (NATS JetStream at `natsUrl`).
 * @throws UnavailableError when JetStream is chosen and cannot be reached.
 */
export async function openEventLog(
  config: EventLogConfig,
  options: { memory?: MemoryEventLogOptions; jetstream?: Omit<JetStreamEventLogOptions, 'servers'> } = {},
): Promise<EventLog> {
  switch (config.eventBus) {
    case 'memory':
      return new MemoryEventLog(options.memory);
    case 'jetstream':
      return JetStreamEventLog.open({ stream: config.natsStream, subjectPrefix: config.natsSubjectPrefix, ...options.jetstream, servers: config.natsUrl });
  }
}
