export { createEventBusService } from './event-bus-service.js';
export { MemoryEventLog, type MemoryEventLogOptions, type StartPosition, type SubscriptionOptions } from './memory-event-log.js';
export { isValidSubjectPattern, subjectMatcher } from './subject-pattern.js';
