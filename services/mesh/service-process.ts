import { randomBytes } from 'node:crypto';
import { credentials } from '@grpc/grpc-js';
import { AuditLog } from '../compliance/audit-log.js';
import { createAuditor } from '../compliance/auditor.js';
import { Compliance, createComplianceService } from '../compliance/index.js';
import { Coordinator, createCoordinatorService } from '../coordinator/index.js';
import { OutcomeRouter } from '../coordinator/outcome-router.js';
import { GRPC_CHANNEL_OPTIONS } from '../common/channel-options.js';
import type { MeshConfig } from '../common/config.js';
import { CONSUL_SERVICE_NAMES, ConsulClient, consulTarget, InstanceClients } from '../common/discovery.js';
import { ConfigError, UnavailableError } from '../common/errors.js';
import { EventPublisher } from '../common/event-publisher.js';
import { callUnary } from '../common/grpc-client.js';
import { GrpcServer, type ServiceRegistration } from '../common/grpc-server.js';
import type { Logger } from '../common/logger.js';
import { PostgresStore } from '../common/postgres-store.js';
import { CancelRunRequest, ComplianceClient, CoordinatorClient, ListFrameworksRequest, SchedulerClient, ValidateRequest } from '../common/proto.js';
import { tracingClientInterceptor } from '../common/telemetry.js';
import { acceptEvents, createEventBusService, followEvents, openEventLog } from '../event-bus/index.js';
import { MetricsService } from '../metrics/index.js';
import { RunOwnership } from '../scheduler/run-ownership.js';
import { startSchedulerTriggers } from '../scheduler/trigger-listener.js';
import { TaskDispatcher } from '../scheduler/task-dispatcher.js';
import { createSchedulerService, RunStore, Scheduler } from '../scheduler/index.js';

/** The services `stagemesh serve` runs, one per process. */
export const SERVICE_ROLES = ['scheduler', 'coordinator', 'event-bus', 'compliance', 'metrics'] as const;
export type ServiceRole = (typeof SERVICE_ROLES)[number];

const CONSUL_NAME: Record<ServiceRole, string> = {
  scheduler: CONSUL_SERVICE_NAMES.scheduler,
  coordinator: CONSUL_SERVICE_NAMES.coordinator,
  'event-bus': CONSUL_SERVICE_NAMES.eventBus,
  compliance: CONSUL_SERVICE_NAMES.compliance,
  metrics: CONSUL_SERVICE_NAMES.metrics,
};

export interface ServiceProcessOptions {
  role: ServiceRole;
  /** host, grpcPort (0 picks one), databaseUrl/databaseSchema, natsUrl/natsStream/natsSubjectPrefix, leases and timeouts. */
  config: MeshConfig;
  logger: Logger;
  /** The Consul agent's HTTP API. @default CONSUL_HTTP_ADDR, else 127.0.0.1:8500 */
  consulAddr?: string;
  /** This instance's id in Consul (and, for a scheduler, in the store). @default "<service>-<host>-<port>-<random>" */
  instanceId?: string;
}

/** How long a stopping service lets calls in flight end before it cuts the rest. */
const STREAM_GRACE_MS = 2_000;

/** What a role started, stopped in reverse order. */
type Cleanup = () => Promise<void> | void;

/**
 * One stagemesh service in its own process (the distributed profile): its
 * gRPC server, registered in Consul with a gRPC health check, state in
 * PostgreSQL, events on NATS JetStream, and its peers found through Consul.
 */
export class ServiceProcess {
  #stopping?: Promise<void>;
  readonly closed: Promise<void>;
  #resolveClosed!: () => void;

  private constructor(
    readonly role: ServiceRole,
    readonly instanceId: string,
    readonly port: number,
    private readonly server: GrpcServer,
    private readonly consul: ConsulClient,
    private readonly cleanups: Cleanup[],
    private readonly logger: Logger,
  ) {
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
  }

  /**
   * Starts the role, then registers it in Consul. If a step fails, what was
   * started is stopped before the error is thrown.
   * @throws ConfigError when the role needs PostgreSQL and no database URL is set.
   */
  static async start(options: ServiceProcessOptions): Promise<ServiceProcess> {
    const cleanups: Cleanup[] = [];
    const consul = new ConsulClient(options.consulAddr);
    const { config, logger, role } = options;
    const name = CONSUL_NAME[role];
    const instanceId = options.instanceId ?? `${name}-${randomBytes(4).toString('hex')}`;
    try {
      const services = await startRole({ ...options, instanceId, consulAddr: consul.baseUrl }, cleanups);
      const server = await GrpcServer.start({ host: config.host, port: config.grpcPort, logger, shutdownTimeoutMs: config.shutdownTimeoutMs, services });
      cleanups.push(() => server.forceStop());
      await consul.register({ id: instanceId, name, address: config.host, port: server.port, tags: ['stagemesh', role], meta: { pid: String(process.pid), role } });
      logger.info({ role, instanceId, port: server.port, consul: consul.baseUrl }, 'registered in Consul');
      return new ServiceProcess(role, instanceId, server.port, server, consul, cleanups, logger);
    } catch (err) {
      for (const cleanup of cleanups.reverse()) await Promise.resolve().then(cleanup).catch(() => undefined);
      throw err;
    }
  }

  /**
   * Graceful stop: leaves Consul first (clients stop sending here as soon as
   * their watch hears of it), answers NOT_SERVING, lets in-flight calls end,
   * then stops the role. Safe to call twice.
   */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      await this.consul.deregister(this.instanceId).catch((err: unknown) => this.logger.warn({ err: (err as Error).message }, 'could not deregister from Consul'));
      this.server.setServing(false);
      // Unary calls in flight get a moment to end; long-lived streams (workers'
      // Connect, Subscribe, WatchRun) are then cut, and their clients reconnect
      // to another instance, which Consul now offers them instead of this one.
      await Promise.race([this.server.stop(), new Promise((resolve) => setTimeout(resolve, STREAM_GRACE_MS))]);
      this.server.forceStop();
      for (const cleanup of [...this.cleanups].reverse()) {
        await Promise.resolve()
          .then(cleanup)
          .catch((err: unknown) => this.logger.error({ err }, 'error while stopping'));
      }
      this.#resolveClosed();
    })();
    return this.#stopping;
  }
}

type RoleOptions = ServiceProcessOptions & { instanceId: string; consulAddr: string };

/** Opens the PostgreSQL store a role keeps its state in. */
async function openStore(options: RoleOptions, cleanups: Cleanup[]): Promise<PostgresStore> {
  const { databaseUrl, databaseSchema } = options.config;
  if (!databaseUrl) throw new ConfigError(`stagemesh serve ${options.role} keeps its state in PostgreSQL: set STAGEMESH_DATABASE_URL or --database-url`, 'databaseUrl');
  const store = await PostgresStore.open({ connectionString: databaseUrl, schema: databaseSchema || undefined });
  cleanups.push(() => store.close());
  return store;
}

/** Opens the JetStream event log and a publisher into it. */
async function openEvents(options: RoleOptions, cleanups: Cleanup[]) {
  const eventLog = await openEventLog({ ...options.config, eventBus: 'jetstream' });
  cleanups.push(() => eventLog.close());
  const publisher = new EventPublisher(async (events) => void (await eventLog.append(acceptEvents(events))), options.logger);
  cleanups.push(() => publisher.close());
  return { eventLog, publisher };
}

/** Clients of every healthy instance of a service, closed with the process. */
function instancesOf<C extends { close(): void }>(options: RoleOptions, service: string, create: (address: string) => C, cleanups: Cleanup[]): InstanceClients<C> {
  const clients = new InstanceClients(options.consulAddr, service, create, options.logger);
  cleanups.push(() => clients.close());
  return clients;
}

const CLIENT_OPTIONS = { ...GRPC_CHANNEL_OPTIONS, interceptors: [tracingClientInterceptor] };

/** Starts what a role runs and returns the gRPC services it serves. */
async function startRole(options: RoleOptions, cleanups: Cleanup[]): Promise<ServiceRegistration[]> {
  const { config, logger, role } = options;
  const creds = credentials.createInsecure();
  switch (role) {
    case 'scheduler': {
      const store = await openStore(options, cleanups);
      const ownership = new RunOwnership(store, options.instanceId, config.schedulerLeaseTtlMs);
      await ownership.join();
      const runStore = new RunStore(store, { owner: options.instanceId });
      const events = await openEvents(options, cleanups);
      const { publisher } = events;
      const compliance = new ComplianceClient(consulTarget(CONSUL_SERVICE_NAMES.compliance, options.consulAddr), creds, CLIENT_OPTIONS);
      cleanups.push(() => compliance.close());
      const coordinators = instancesOf(options, CONSUL_SERVICE_NAMES.coordinator, (address) => new CoordinatorClient(address, creds, CLIENT_OPTIONS), cleanups);
      const peers = instancesOf(options, CONSUL_SERVICE_NAMES.scheduler, (address) => new SchedulerClient(address, creds, CLIENT_OPTIONS), cleanups);
      let rejoining: Promise<void> | undefined;
      // A peer took this replica's runs: forget them, join again, take what has no owner.
      const rejoin = () =>
        (rejoining ??= (async () => {
          scheduler.forgetAll();
          await ownership.join();
          await scheduler.recover();
        })()
          .catch((err: unknown) => logger.error({ err }, 'rejoining the scheduler replicas failed; retrying on the next renewal'))
          .finally(() => (rejoining = undefined)));
      const scheduler: Scheduler = new Scheduler({
        logger,
        runs: runStore,
        publisher,
        instanceId: options.instanceId,
        claimRuns: (claim) => ownership.claim(claim),
        onFenced: () => void rejoin(),
        forwardCancel: async (runId, reason) => {
          const owner = await ownership.ownerOf(runId);
          if (!owner || owner === options.instanceId) return false;
          const peer = peers.get(owner);
          if (!peer) throw new UnavailableError(`run ${runId} is advanced by scheduler ${owner}, which is not reachable now; retry`);
          await callUnary(peer.cancelRun.bind(peer), CancelRunRequest.fromPartial({ runId, reason }), { timeoutMs: 10_000 });
          return true;
        },
        validate: async (pipeline) => (await callUnary(compliance.validate.bind(compliance), ValidateRequest.fromPartial({ pipeline }), { timeoutMs: 10_000 })).report!,
        enqueue: (tasks) => dispatcher.send(tasks),
        cancelTasks: (runIds, reason) => dispatcher.cancel(runIds, reason),
      });
      const dispatcher = new TaskDispatcher(coordinators, {
        logger,
        isActive: (runId) => scheduler.isActive(runId),
        onLost: (outcomes) => void scheduler.applyOutcomes(outcomes).catch((err: unknown) => logger.error({ err }, 'recording attempts lost with their coordinator failed')),
      });
      cleanups.push(() => dispatcher.close());
      // Cleanups run in reverse: the scheduler records its attempts in flight
      // as interrupted (a fenced commit), then leaves the replica set, and a
      // peer takes its unfinished runs on its next renewal.
      cleanups.push(() => ownership.leave());
      cleanups.push(() => scheduler.stop());
      const { eventLog } = events;
      // Every replica follows triggers; the idempotency key (unique in the store) starts one run per event.
      const triggers = startSchedulerTriggers(eventLog, logger, runStore, scheduler);
      cleanups.push(() => triggers.stop());
      await coordinators.watch.ready();
      const resumed = await scheduler.recover();
      if (resumed > 0) logger.info({ runs: resumed }, 'took over unfinished runs');
      // Renew this replica's claim a few times per lease, and take the runs of replicas whose claim lapsed.
      const renewal = setInterval(() => {
        if (rejoining) return;
        void ownership
          .renew()
          .then((held) => (held ? scheduler.adoptOrphans().then(() => undefined) : rejoin()))
          .catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'renewing the scheduler lease failed'));
      }, Math.max(250, Math.floor(config.schedulerLeaseTtlMs / 4)));
      cleanups.push(() => clearInterval(renewal));
      return [createSchedulerService(logger, scheduler, runStore)];
    }
    case 'coordinator': {
      const { publisher } = await openEvents(options, cleanups);
      const schedulers = instancesOf(options, CONSUL_SERVICE_NAMES.scheduler, (address) => new SchedulerClient(address, creds, CLIENT_OPTIONS), cleanups);
      const router = new OutcomeRouter(schedulers, { logger, giveUpMs: Math.max(10_000, 3 * config.schedulerLeaseTtlMs) });
      cleanups.push(() => router.close());
      const coordinator = new Coordinator({
        logger,
        leaseTtlMs: config.leaseTtlMs,
        publisher,
        refuseWithoutWorkers: true,
        instanceId: options.instanceId,
        reportOutcomes: (outcomes) => router.report(outcomes),
      });
      cleanups.push(() => coordinator.stop());
      cleanups.push(() => coordinator.beginStop());
      return [createCoordinatorService(logger, coordinator)];
    }
    case 'event-bus': {
      const { eventLog } = await openEvents(options, cleanups);
      return [createEventBusService(logger, eventLog)];
    }
    case 'compliance': {
      const store = await openStore(options, cleanups);
      const runStore = new RunStore(store);
      const { eventLog, publisher } = await openEvents(options, cleanups);
      const coordinators = instancesOf(options, CONSUL_SERVICE_NAMES.coordinator, (address) => new CoordinatorClient(address, creds, CLIENT_OPTIONS), cleanups);
      const auditLog = new AuditLog();
      const compliance = new Compliance(logger, {
        auditLog,
        // Placement (COF Spatial): what the workers of every coordinator offer.
        availableFrameworks: async () => {
          const answers = await Promise.all(coordinators.list().map(({ client }) => callUnary(client.listFrameworks.bind(client), ListFrameworksRequest.fromPartial({}), { timeoutMs: 2_000 })));
          return [...new Set(answers.flatMap((a) => a.frameworks.map((f) => f.framework)))];
        },
      });
      const auditor = createAuditor({
        getRuns: async (ids) => (await runStore.loadRuns(ids)).map((r) => ({ run: r.run, pipeline: r.definition })),
        // Reading a run whole from PostgreSQL costs more than auditing it: runs that cannot have findings are not read.
        pipelinesOf: (ids) => runStore.pipelinesOfRuns(ids),
        log: auditLog,
        publish: (events) => publisher.publish(...events),
        logger,
      });
      const stopAudit = followEvents(eventLog, ['run.finished'], (event) => auditor.onEvent(event), logger, 'compliance audit');
      cleanups.push(async () => {
        stopAudit();
        await auditor.settled();
      });
      return [createComplianceService(logger, compliance)];
    }
    case 'metrics': {
      const store = await openStore(options, cleanups);
      const { eventLog, publisher } = await openEvents(options, cleanups);
      const metrics = new MetricsService({ logger, store, publish: (event) => publisher.publish(event), regressionCheckIntervalMs: config.metricsCheckIntervalMs });
      cleanups.push(() => metrics.stop());
      metrics.follow(eventLog);
      return [metrics.registration()];
    }
  }
}
