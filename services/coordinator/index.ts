export { Coordinator, type CoordinatorOptions, type NodeSession } from './coordinator.js';
export { createCoordinatorService } from './coordinator-service.js';
export { LeaseTable, type Lease } from './lease-table.js';
export { TaskQueue } from './task-queue.js';
export { connectInProcess } from './in-process-connect.js';
