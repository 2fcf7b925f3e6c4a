// A whole distributed stagemesh for a test: a throwaway Consul agent, its own
// PostgreSQL schema and JetStream stream, and LocalCluster's processes.
// stop() removes all of it, also after a failure.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalCluster, type LocalClusterOptions } from '../../cli/cluster.js';
import { createMeshClients, type MeshClients } from '../../services/common/grpc-client.js';
import { JetStreamEventLog } from '../../services/event-bus/jetstream-event-log.js';
import { startConsul, type ConsulAgent } from './consul.js';
import { queryTestPostgres, requirePostgres, requireTool, TEST_POSTGRES_URL, type SkippableContext } from './tools.js';

const NATS_URL = process.env.STAGEMESH_NATS_URL ?? 'nats://127.0.0.1:4222';

export interface TestCluster {
  cluster: LocalCluster;
  consul: ConsulAgent;
  /** Clients that find every service through Consul. */
  clients: MeshClients;
  /** The cluster's event log, read directly. */
  events: JetStreamEventLog;
  schema: string;
  logDir: string;
  /** Rows of the cluster's PostgreSQL schema: `${schema}` in `sql` is replaced. */
  query<Row = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<Row[]>;
  stop(): Promise<void>;
}

/**
 * Starts Consul and the cluster; needs .tools/bin/consul, PostgreSQL and
 * NATS JetStream (skips with a printed reason without them, fails under CI).
 */
export async function startTestCluster(ctx: SkippableContext, options: Partial<LocalClusterOptions> = {}): Promise<TestCluster> {
  const consulBin = requireTool('consul', ctx);
  await requirePostgres(ctx);
  const id = randomUUID().replace(/-/g, '').slice(0, 10);
  let events: JetStreamEventLog;
  try {
    events = await JetStreamEventLog.open({ servers: NATS_URL, stream: `SMCLUSTER_${id}`, subjectPrefix: `smcluster.${id}`, connectTimeoutMs: 2_000 });
  } catch (err) {
    if (process.env.CI === 'true') throw err;
    console.log(`      skipping: no NATS JetStream at ${NATS_URL}: ${(err as Error).message}`);
    ctx.skip();
    throw err;
  }
  const schema = `stagemesh_cluster_${process.pid}_${id}`;
  const logDir = mkdtempSync(join(tmpdir(), 'stagemesh-cluster-'));
  let consul: ConsulAgent | undefined;
  let cluster: LocalCluster | undefined;
  let clients: MeshClients | undefined;
  const stop = async () => {
    clients?.close();
    await cluster?.stop(5_000);
    await consul?.stop();
    await events.destroy().catch(() => undefined);
    await events.close();
    await queryTestPostgres(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    rmSync(logDir, { recursive: true, force: true });
  };
  try {
    consul = await startConsul({ bin: consulBin });
    cluster = await LocalCluster.start({
      logDir,
      consulAddr: consul.httpAddr,
      databaseUrl: TEST_POSTGRES_URL,
      databaseSchema: schema,
      natsUrl: NATS_URL,
      natsStream: `SMCLUSTER_${id}`,
      natsSubjectPrefix: `smcluster.${id}`,
      ...options,
    });
    clients = createMeshClients(`consul://${new URL(consul.httpAddr).host}`);
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  return {
    cluster,
    consul,
    clients,
    events,
    schema,
    logDir,
    query: (sql, params) => queryTestPostgres(sql.replaceAll('${schema}', schema), params),
    stop,
  };
}
