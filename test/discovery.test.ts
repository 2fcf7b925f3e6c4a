import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { credentials, Metadata, status } from '@grpc/grpc-js';
import { consulBaseUrl, ConsulClient, consulTarget, InstanceClients, serviceTarget, ServiceWatch } from '../services/common/discovery.js';
import { GrpcServer } from '../services/common/grpc-server.js';
import { createLogger } from '../services/common/logger.js';
import { EventBusClient, GetTopicInfoRequest, type GetTopicInfoResponse } from '../services/common/proto.js';
import { createEventBusService } from '../services/event-bus/event-bus-service.js';
import { MemoryEventLog } from '../services/event-bus/memory-event-log.js';
import { startConsul, type ConsulAgent } from './support/consul.js';
import { requireTool, waitUntil } from './support/tools.js';

const logger = createLogger({ level: 'silent' });

/** One call through `client`; resolves to the port of the instance that answered it. */
function answeredBy(client: EventBusClient): Promise<number> {
  return new Promise((resolve, reject) => {
    const call = client.getTopicInfo(GetTopicInfoRequest.fromPartial({}), new Metadata(), { deadline: Date.now() + 5_000 }, (err: Error | null, _res: GetTopicInfoResponse) => {
      if (err) reject(err);
      else resolve(Number(call.getPeer().split(':').pop()));
    });
  });
}

describe('discovery - Consul registration and the consul:// resolver', function () {
  this.timeout(60_000);
  let consul: ConsulAgent | undefined;
  let agent: ConsulClient;
  const servers: GrpcServer[] = [];
  const service = `stagemesh-test-${randomUUID().slice(0, 8)}`;
  const ids: string[] = [];

  /** Serves the event bus (any small unary call will do) and registers it in Consul under `service`. */
  async function instance(): Promise<{ server: GrpcServer; id: string }> {
    const server = await GrpcServer.start({ logger, services: [createEventBusService(logger, new MemoryEventLog())], shutdownTimeoutMs: 1_000 });
    servers.push(server);
    const id = `${service}-${server.port}`;
    ids.push(id);
    await agent.register({ id, name: service, address: '127.0.0.1', port: server.port, meta: { test: 'discovery' } });
    return { server, id };
  }

  before(async function () {
    requireTool('consul', this);
    consul = await startConsul();
    agent = new ConsulClient(consul.httpAddr);
  });

  after(async () => {
    for (const server of servers) server.forceStop();
    await consul?.stop();
  });

  it('reads CONSUL_HTTP_ADDR forms and maps mesh addresses to per-service targets', () => {
    assert.equal(consulBaseUrl('127.0.0.1:8501'), 'http://127.0.0.1:8501');
    assert.equal(consulBaseUrl('consul.internal'), 'http://consul.internal:8500');
    assert.equal(consulBaseUrl('https://consul.internal'), 'https://consul.internal:8501');
    assert.throws(() => consulBaseUrl('http://[bad'), /not host:port/);
    assert.equal(serviceTarget('127.0.0.1:50051', 'stagemesh-scheduler'), '127.0.0.1:50051');
    assert.equal(serviceTarget('consul://10.0.0.2:8500', 'stagemesh-scheduler'), 'consul://10.0.0.2:8500/stagemesh-scheduler');
    assert.equal(consulTarget('stagemesh-metrics', 'http://127.0.0.1:9'), 'consul://127.0.0.1:9/stagemesh-metrics');
  });

  it('spreads calls round-robin over the healthy instances, and takes one out within 5 s of its deregistration or crash', async () => {
    const a = await instance();
    const b = await instance();
    const c = await instance();
    const watch = ServiceWatch.shared(consul!.httpAddr, service);
    try {
      // Consul's gRPC check passes within its first interval.
      await waitUntil('three healthy instances', async () => (watch.watch.instances?.length === 3 ? true : undefined), { timeoutMs: 15_000, intervalMs: 100 });
      const client = new EventBusClient(consulTarget(service, consul!.httpAddr), credentials.createInsecure());
      try {
        const seen = new Set<number>();
        for (let i = 0; i < 12; i++) seen.add(await answeredBy(client));
        assert.deepEqual([...seen].sort(), [a.server.port, b.server.port, c.server.port].sort());

        // A graceful stop deregisters: the blocking query answers at once.
        const stoppedAt = Date.now();
        await agent.deregister(b.id);
        await waitUntil('b to leave the rotation', async () => (watch.watch.instances?.every((i) => i.id !== b.id) ? true : undefined), { timeoutMs: 5_000, intervalMs: 20 });
        const deregisteredMs = Date.now() - stoppedAt;

        // A crash: nothing deregisters, Consul's check turns critical.
        const crashedAt = Date.now();
        c.server.forceStop();
        await waitUntil('c to leave the rotation', async () => (watch.watch.instances?.every((i) => i.id !== c.id) ? true : undefined), { timeoutMs: 5_000, intervalMs: 20 });
        const crashMs = Date.now() - crashedAt;
        console.log(`      out of rotation: ${deregisteredMs} ms after deregistration, ${crashMs} ms after a crash`);
        assert.ok(deregisteredMs < 5_000 && crashMs < 5_000);

        // Every call now lands on the one instance left, none fails.
        for (let i = 0; i < 10; i++) assert.equal(await answeredBy(client), a.server.port);
      } finally {
        client.close();
      }
    } finally {
      watch.release();
    }
  });

  it('tells per-instance clients which instances left, and fails calls with UNAVAILABLE when none is healthy', async () => {
    const lonely = `stagemesh-test-${randomUUID().slice(0, 8)}`;
    const server = await GrpcServer.start({ logger, services: [createEventBusService(logger, new MemoryEventLog())], shutdownTimeoutMs: 1_000 });
    servers.push(server);
    await agent.register({ id: `${lonely}-1`, name: lonely, address: '127.0.0.1', port: server.port });
    const pool = new InstanceClients(consul!.httpAddr, lonely, (address) => new EventBusClient(address, credentials.createInsecure()));
    const gone: string[][] = [];
    pool.onGone((left) => gone.push(left));
    const client = new EventBusClient(consulTarget(lonely, consul!.httpAddr), credentials.createInsecure());
    try {
      await waitUntil('the instance to pass its check', async () => (pool.list().length === 1 ? true : undefined), { timeoutMs: 15_000, intervalMs: 100 });
      assert.ok(pool.get(`${lonely}-1`));
      assert.equal(await answeredBy(client), server.port);
      await agent.deregister(`${lonely}-1`);
      await waitUntil('the pool to hear of it', async () => (gone.length === 1 ? true : undefined), { timeoutMs: 5_000, intervalMs: 20 });
      assert.deepEqual(gone, [[`${lonely}-1`]]);
      assert.equal(pool.get(`${lonely}-1`), undefined);
      await assert.rejects(answeredBy(client), (err: { code?: number; details?: string }) => err.code === status.UNAVAILABLE && /no healthy instance/.test(err.details ?? ''));
    } finally {
      client.close();
      pool.close();
    }
  });
});
