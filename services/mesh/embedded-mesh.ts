import { resolve } from 'node:path';
import { Coordinator, createCoordinatorService } from '../coordinator/index.js';
import { createComplianceService } from '../compliance/index.js';
import { AuditLog } from '../compliance/audit-log.js';
import { createAuditor, type Auditor } from '../compliance/auditor.js';
import { followEvents } from '../common/follow-events.js';
import type { MeshConfig } from '../common/config.js';
import { UnavailableError } from '../common/errors.js';
import { EventPublisher, publishBatchTo } from '../common/event-publisher.js';
import { ValidateRequest } from '../common/proto.js';
import { callUnary, createMeshClients, type MeshClients } from '../common/grpc-client.js';
import { GrpcServer } from '../common/grpc-server.js';
import type { Logger } from '../common/logger.js';
import { PgliteStore } from '../common/pglite-store.js';
import { PostgresStore } from '../common/postgres-store.js';
import type { Store } from '../common/store.js';
import { createEventBusService, openEventLog, type EventLog } from '../event-bus/index.js';
import { TriggerListener } from '../scheduler/trigger-listener.js';
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
 * the HTTP edge and a PGlite store, in one process. Services still talk to
 * each other through their gRPC contracts, exactly as in the distributed profile.
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
    const runStore = new RunStore(store);
    const auditLog = new AuditLog();
    const eventLog = await openEventLog(config);
    cleanups.push(() => eventLog.close());
    // Services reach each other through gRPC clients, created once the port is bound.
    let clients: MeshClients | undefined;
    const client = () => {
      if (!clients) throw new Error('mesh clients used before the server started');
      return clients;
    };
    const publisher = new EventPublisher(publishBatchTo(() => client().eventBus), logger);
    cleanups.push(() => publisher.close());
    const metrics = new MetricsService({ logger, store, publish: (event) => publisher.publish(event), regressionCheckIntervalMs: config.metricsCheckIntervalMs });
    cleanups.push(() => metrics.stop());
    const scheduler = new Scheduler({
      logger,
      runs: runStore,
      publisher,
      validate: async (pipeline) => (await callUnary(client().compliance.validate.bind(client().compliance), ValidateRequest.fromPartial({ pipeline }), { timeoutMs: 10_000 })).report!,
      enqueue: async (tasks) => void (await callUnary(client().coordinator.enqueueTasks.bind(client().coordinator), { tasks }, { timeoutMs: 10_000 })),
      cancelTasks: async (runIds, reason) => void (await callUnary(client().coordinator.cancelTasks.bind(client().coordinator), { runIds, reason }, { timeoutMs: 10_000 })),
    });
    cleanups.push(() => scheduler.stop());
    const coordinator = new Coordinator({
      logger,
      leaseTtlMs: config.leaseTtlMs,
      publisher,
      reportOutcomes: async (outcomes) => void (await callUnary(client().scheduler.reportOutcomes.bind(client().scheduler), { outcomes }, { timeoutMs: 10_000 })),
    });
    cleanups.push(() => coordinator.stop());
    const server = await GrpcServer.start({
      host: config.host,
      port: config.grpcPort,
      logger,
      shutdownTimeoutMs: config.shutdownTimeoutMs,
      services: [
        createSchedulerService(logger, scheduler, runStore),
        createCoordinatorService(logger, coordinator),
        createEventBusService(logger, eventLog),
        createComplianceService(logger, {
          auditLog,
          // Placement (COF Spatial): the frameworks connected workers offer now.
          availableFrameworks: async () =>
            (await callUnary(client().coordinator.listFrameworks.bind(client().coordinator), {}, { timeoutMs: 1_000 })).frameworks.map((f) => f.framework),
        }),
        metrics.registration(),
      ],
    }).catch((err: unknown) => {
      throw portError(err, 'gRPC', config.grpcPort);
    });
    cleanups.push(() => server.forceStop());
    const address = `${config.host.includes(':') ? `[${config.host}]` : config.host}:${server.port}`;
    clients = createMeshClients(address);
    cleanups.push(() => clients?.close());
    const auditor = createAuditor({ getRun: (id) => runStore.getRun(id), getPipeline: (run) => runStore.runDefinition(run.runId), log: auditLog, publish: (events) => publisher.publish(...events), logger });
    const stopAudit = followEvents(clients.eventBus, ['run.finished'], (event) => auditor.onEvent(event), logger, 'compliance audit');
    if (options.metrics !== false) metrics.follow(clients.eventBus);
    const stopMetrics = () => {
      metrics.stop();
      stopAudit();
    };
    cleanups.push(stopMetrics);
    // Pipelines declaring `triggers:` start a run for each matching event; the
    // idempotency key makes a redelivered event start the run only once.
    const triggers = TriggerListener.start({
      eventBus: clients.eventBus,
      logger,
      pipelines: async () =>
        (await runStore.listPipelines(1000))
          .filter((p) => p.triggers.length > 0)
          .map((p) => ({ pipelineRef: p.name, triggers: p.triggers, inputNames: Object.keys(p.inputs) })),
      submit: async (pipelineRef, inputs, event) =>
        void (await callUnary(
          client().scheduler.submitRun.bind(client().scheduler),
          { pipelineRef, inputs, idempotencyKey: `trigger:${event.id}:${pipelineRef}`, priority: 0, deadline: '', labels: { trigger: event.type } },
          { timeoutMs: 10_000 },
        )),
    });
    cleanups.push(() => triggers.stop());
    const resumed = await scheduler.recover();
    if (resumed > 0) logger.info({ runs: resumed }, 'resumed unfinished runs');
    const worker = options.worker === false ? undefined : await Worker.start({ address, logger, capacity: config.workerCapacity, nodeId: 'embedded-worker', drainTimeoutMs: config.shutdownTimeoutMs });
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

