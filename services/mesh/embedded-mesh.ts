import { resolve } from 'node:path';
import { connectInProcess, Coordinator, createCoordinatorService } from '../coordinator/index.js';
import { Compliance, createComplianceService } from '../compliance/index.js';
import { AuditLog } from '../compliance/audit-log.js';
import { createAuditor, type Auditor } from '../compliance/auditor.js';
import type { MeshConfig } from '../common/config.js';
import { UnavailableError } from '../common/errors.js';
import { EventPublisher } from '../common/event-publisher.js';
import { ComplianceService } from '../common/proto.js';
import { traceLocalCall } from '../common/telemetry.js';
import { createMeshClients, type MeshClients } from '../common/grpc-client.js';
import { hostPort } from '../common/discovery.js';
import { GrpcServer } from '../common/grpc-server.js';
import type { Logger } from '../common/logger.js';
import { PgliteStore } from '../common/pglite-store.js';
import { PostgresStore } from '../common/postgres-store.js';
import type { Store } from '../common/store.js';
import { acceptEvents, createEventBusService, followEvents, openEventLog, type EventLog } from '../event-bus/index.js';
import { startSchedulerTriggers, type TriggerListener } from '../scheduler/trigger-listener.js';
import { MetricsService } from '../metrics/index.js';
import { createSchedulerService, RunStore, Scheduler } from '../scheduler/index.js';
import { Worker } from '../worker/index.js';
import { HttpEdge } from '../../gateway/index.js';

export type MeshState = 'running' | 'stopping' | 'stopped';

export interface EmbeddedMeshOptions {
  /** Start the local worker; without it, stages wait for `stagemesh worker` processes. @default true */
  worker?: boolean;
  /** Let the metrics service follow lifecycle events (off only to measure what metrics cost). @default true */
  metrics?: boolean;
}

/** Says which port is taken, instead of grpc-js's or Node's generic bind error. */
function portError(err: unknown, what: string, port: number): Error {
  const text = String((err as Error)?.message ?? err);
  if (!/EADDRINUSE/.test(text)) return err as Error;
  return new UnavailableError(`${what} port ${port} is already in use (another stagemesh running?); stop it or choose another port`, { cause: err });
}

/**
 * The embedded profile: all five services on one gRPC port, one local worker,
 * the HTTP edge and a PGlite store, in one process. The services call each
 * other in process (no loopback round trip on the hot path); clients, the
 * edge and workers reach them through the same gRPC contracts as in the
 * distributed profile.
 */
export class EmbeddedMesh {
  #state: MeshState = 'running';
  #stopping?: Promise<void>;
  /** Resolves once the mesh has stopped; never rejects. */
  readonly closed: Promise<void>;
  #resolveClosed!: () => void;

  private constructor(
    readonly config: MeshConfig,
    readonly grpcPort: number,
    readonly httpPort: number,
    private readonly parts: {
      logger: Logger;
      store: Store;
      server: GrpcServer;
      clients: MeshClients;
      scheduler: Scheduler;
      coordinator: Coordinator;
      publisher: EventPublisher;
      worker?: Worker;
      edge: HttpEdge;
      stopMetrics: () => void;
      eventLog: EventLog;
      auditor: Auditor;
      triggers: TriggerListener;
    },
  ) {
    this.closed = new Promise((r) => (this.#resolveClosed = r));
  }

  /**
   * Opens the store, starts every service, resumes unfinished runs, connects
   * the worker and opens the edge. If any step fails, what was started is
   * stopped again before the error is thrown.
   */
  static async start(config: MeshConfig, logger: Logger, options: EmbeddedMeshOptions = {}): Promise<EmbeddedMesh> {
    const cleanups: (() => Promise<void> | void)[] = [];
    try {
      return await EmbeddedMesh.#start(config, logger, options, cleanups);
    } catch (err) {
      for (const cleanup of cleanups.reverse()) await Promise.resolve().then(cleanup).catch(() => undefined);
      throw err;
    }
  }

  static async #start(config: MeshConfig, logger: Logger, options: EmbeddedMeshOptions, cleanups: (() => Promise<void> | void)[]): Promise<EmbeddedMesh> {
    const dataDir = config.dataDir.startsWith('memory://') ? config.dataDir : resolve(config.dataDir);
    // PostgreSQL when configured (state shared with other processes), else PGlite in the data folder.
    const store: Store = config.databaseUrl
      ? await PostgresStore.open({ connectionString: config.databaseUrl, schema: config.databaseSchema || undefined })
      : await PgliteStore.open(dataDir);
    cleanups.push(() => store.close());
    // Only this process writes to a PGlite data folder; PostgreSQL may be shared with other processes.
    const runStore = new RunStore(store, { exclusive: !config.databaseUrl });
    const auditLog = new AuditLog();
    const eventLog = await openEventLog(config);
    cleanups.push(() => eventLog.close());
    // Services in this process call each other directly (the same calls the
    // distributed profile makes over gRPC), the worker's Connect stream too.
    const publisher = new EventPublisher(async (events) => void (await eventLog.append(acceptEvents(events))), logger);
    cleanups.push(() => publisher.close());
    const metrics = new MetricsService({ logger, store, publish: (event) => publisher.publish(event), regressionCheckIntervalMs: config.metricsCheckIntervalMs });
    cleanups.push(() => metrics.stop());
    // The coordinator reports to the scheduler created below: outcomes only come back for tasks the scheduler sent.
    const coordinator = new Coordinator({
      logger,
      leaseTtlMs: config.leaseTtlMs,
      publisher,
      reportOutcomes: async (outcomes) => void (await scheduler.applyOutcomes(outcomes)),
    });
    cleanups.push(() => coordinator.stop());
    const compliance = new Compliance(logger, {
      auditLog,
      // Placement (COF Spatial): the frameworks connected workers offer now.
      availableFrameworks: async () => coordinator.frameworks().map((f) => f.framework),
    });
    const scheduler = new Scheduler({
      logger,
      runs: runStore,
      publisher,
      validate: (pipeline) => traceLocalCall(ComplianceService.validate.path, () => compliance.validate({ pipeline, policy: undefined })),
      enqueue: async (tasks) => void coordinator.enqueue(tasks),
      cancelTasks: async (runIds, reason) => void coordinator.cancelRuns(runIds, reason),
    });
    cleanups.push(() => scheduler.stop());
    const server = await GrpcServer.start({
      host: config.host,
      port: config.grpcPort,
      logger,
      shutdownTimeoutMs: config.shutdownTimeoutMs,
      services: [
        createSchedulerService(logger, scheduler, runStore),
        createCoordinatorService(logger, coordinator),
        createEventBusService(logger, eventLog),
        createComplianceService(logger, compliance),
        metrics.registration(),
      ],
    }).catch((err: unknown) => {
      throw portError(err, 'gRPC', config.grpcPort);
    });
    cleanups.push(() => server.forceStop());
    const address = hostPort({ address: config.host, port: server.port });
    const clients = createMeshClients(address);
    cleanups.push(() => clients.close());
    const auditor = createAuditor({ getRuns: async (ids) => (await runStore.loadRuns(ids)).map((r) => ({ run: r.run, pipeline: r.definition })), log: auditLog, publish: (events) => publisher.publish(...events), logger });
    const stopAudit = followEvents(eventLog, ['run.finished'], (event) => auditor.onEvent(event), logger, 'compliance audit');
    if (options.metrics !== false) metrics.follow(eventLog);
    const stopMetrics = () => {
      metrics.stop();
      stopAudit();
    };
    cleanups.push(stopMetrics);
    // Pipelines declaring `triggers:` start a run for each matching event; the
    // idempotency key makes a redelivered event start the run only once.
    const triggers = startSchedulerTriggers(eventLog, logger, runStore, scheduler);
    cleanups.push(() => triggers.stop());
    const resumed = await scheduler.recover();
    if (resumed > 0) logger.info({ runs: resumed }, 'resumed unfinished runs');
    const worker =
      options.worker === false
        ? undefined
        : await Worker.start({
            address,
            // In process, like the services: the same Connect messages, without gRPC in between.
            connect: () => connectInProcess(coordinator),
            logger,
            capacity: config.workerCapacity,
            nodeId: 'embedded-worker',
            drainTimeoutMs: config.shutdownTimeoutMs,
          });
    cleanups.push(() => worker?.stop());
    const edge = await HttpEdge.start({ host: config.host, port: config.httpPort, clients, logger, metrics: metrics.exposition }).catch((err: unknown) => {
      throw portError(err, 'HTTP', config.httpPort);
    });
    return new EmbeddedMesh(config, server.port, edge.port, { logger, store, eventLog, auditor, server, clients, scheduler, coordinator, publisher, worker, edge, stopMetrics, triggers });
  }

  get state(): MeshState {
    return this.#state;
  }

  /**
   * Graceful shutdown: stops accepting work (health NOT_SERVING, edge closed),
   * lets running stages finish and records their outcomes, flushes events,
   * then closes the server and the store. Safe to call twice.
   */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#state = 'stopping';
      const p = this.parts;
      p.server.setServing(false);
      const results = await Promise.allSettled([p.edge.stop()]);
      await p.triggers.stop();
      p.coordinator.beginStop();
      await p.worker?.stop();
      await p.coordinator.stop();
      await p.scheduler.stop();
      await p.publisher.close();
      p.stopMetrics();
      await p.auditor.settled();
      // In-flight work is drained; what remains are long-lived streams (watchers), which are cancelled.
      p.server.forceStop();
      await p.server.stop();
      p.clients.close();
      results.push(...(await Promise.allSettled([p.eventLog.close(), p.store.close()])));
      for (const r of results) if (r.status === 'rejected') p.logger.error({ err: r.reason }, 'error while stopping');
      this.#state = 'stopped';
      this.#resolveClosed();
    })();
    return this.#stopping;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

