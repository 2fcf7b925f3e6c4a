export { acceptEvents, createEventBusService } from './event-bus-service.js';
export { openEventLog, type EventLogConfig } from './open-event-log.js';
export {
  DEFAULT_ACK_TIMEOUT_MS,
  DEFAULT_MAX_ACK_PENDING,
  DEFAULT_MAX_DELIVER,
  DEFAULT_MAX_PENDING,
  type ConsumerState,
  type Delivery,
  type DurableConsumerOptions,
  type EventBusBackend,
  type EventLog,
  type StartPosition,
  type SubscriptionOptions,
  type TopicInfo,
} from './event-log.js';
export { MemoryEventLog, type MemoryEventLogOptions } from './memory-event-log.js';
export { JetStreamEventLog, type JetStreamEventLogOptions } from './jetstream-event-log.js';
export { isValidSubjectPattern, subjectMatcher } from './subject-pattern.js';
export { eventMatches } from './event-match.js';
export { remoteEventSource, subscribeEvents, subscribeRequest, type EventSource } from './event-stream.js';
export { followEvents } from './follow-events.js';
export { toCloudEvent, type CloudEventJson } from './cloud-event.js';
export { WebhookForwarder, signWebhook, DEAD_LETTER_TYPE, type WebhookForwarderOptions, type DeadLetter } from './webhook-forwarder.js';
