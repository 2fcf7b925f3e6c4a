import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveMeshConfig } from './config.js';
import { ConfigError } from './errors.js';

describe('resolveMeshConfig()', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stagemesh-config-'));
  const file = (text: string) => {
    const path = join(dir, `c${Math.random()}.yaml`);
    writeFileSync(path, text);
    return path;
  };

  it('applies the documented defaults', () => {
    assert.deepEqual(resolveMeshConfig({}, {}), {
      host: '127.0.0.1',
      grpcPort: 50051,
      httpPort: 8080,
      dataDir: '.stagemesh',
      logLevel: 'info',
      workerCapacity: 8,
      leaseTtlMs: 30_000,
      shutdownTimeoutMs: 10_000,
      eventBus: 'memory',
      natsUrl: 'nats://127.0.0.1:4222',
      natsStream: 'STAGEMESH_EVENTS',
      natsSubjectPrefix: 'stagemesh.events',
      schedulerLeaseTtlMs: 5_000,
      databaseUrl: '',
      databaseSchema: '',
      metricsCheckIntervalMs: 10_000,
    });
  });

  it('takes the event stream, its subject prefix and the scheduler lease from the environment, and refuses bad ones', () => {
    const resolved = resolveMeshConfig({}, { STAGEMESH_NATS_STREAM: 'SM_T1', STAGEMESH_NATS_SUBJECT_PREFIX: 'sm.t1', STAGEMESH_SCHEDULER_LEASE_TTL: '3s' });
    assert.deepEqual([resolved.natsStream, resolved.natsSubjectPrefix, resolved.schedulerLeaseTtlMs], ['SM_T1', 'sm.t1', 3_000]);
    assert.throws(() => resolveMeshConfig({}, { STAGEMESH_NATS_STREAM: 'a.b' }), /STAGEMESH_NATS_STREAM/);
    assert.throws(() => resolveMeshConfig({}, { STAGEMESH_NATS_SUBJECT_PREFIX: 'a..b' }), /STAGEMESH_NATS_SUBJECT_PREFIX/);
    assert.throws(() => resolveMeshConfig({}, { STAGEMESH_SCHEDULER_LEASE_TTL: '500ms' }), /at least 1s/);
  });

  it('takes the metrics check interval from STAGEMESH_METRICS_CHECK_INTERVAL and refuses one under 100ms', () => {
    assert.equal(resolveMeshConfig({}, { STAGEMESH_METRICS_CHECK_INTERVAL: '2s' }).metricsCheckIntervalMs, 2_000);
    assert.throws(() => resolveMeshConfig({}, { STAGEMESH_METRICS_CHECK_INTERVAL: '10ms' }), /STAGEMESH_METRICS_CHECK_INTERVAL: expected a duration of at least 100ms/);
  });

  it('chooses the event bus backend and its NATS server from STAGEMESH_EVENT_BUS and STAGEMESH_NATS_URL', () => {
    const resolved = resolveMeshConfig({}, { STAGEMESH_EVENT_BUS: 'jetstream', STAGEMESH_NATS_URL: 'nats://10.0.0.5:4222' });
    assert.equal(resolved.eventBus, 'jetstream');
    assert.equal(resolved.natsUrl, 'nats://10.0.0.5:4222');
    assert.equal(resolveMeshConfig({ config: file('event_bus: jetstream\nnats_url: nats://n:4222') }, {}).natsUrl, 'nats://n:4222');
    assert.throws(() => resolveMeshConfig({}, { STAGEMESH_EVENT_BUS: 'kafka' }), (err: unknown) => err instanceof ConfigError && err.key === 'STAGEMESH_EVENT_BUS');
  });

  it('prefers flags over environment over file', () => {
    const config = file('grpc_port: 1000\nhttp_port: 1001\ndata_dir: /from/file\nlease_ttl: 5s\n');
    const resolved = resolveMeshConfig({ grpcPort: '3000', config }, { STAGEMESH_GRPC_PORT: '2000', STAGEMESH_HTTP_PORT: '2001' });
    assert.equal(resolved.grpcPort, 3000);
    assert.equal(resolved.httpPort, 2001);
    assert.equal(resolved.dataDir, '/from/file');
    assert.equal(resolved.leaseTtlMs, 5000);
  });

  it('reads the file named by STAGEMESH_CONFIG', () => {
    assert.equal(resolveMeshConfig({}, { STAGEMESH_CONFIG: file('worker_capacity: 3') }).workerCapacity, 3);
  });

  it('reads a PostgreSQL store and refuses what is not a PostgreSQL URL', () => {
    const resolved = resolveMeshConfig({}, { STAGEMESH_DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/test', STAGEMESH_DATABASE_SCHEMA: 'mesh_a' });
    assert.equal(resolved.databaseUrl, 'postgres://postgres@127.0.0.1:5432/test');
    assert.equal(resolved.databaseSchema, 'mesh_a');
    assert.throws(() => resolveMeshConfig({}, { STAGEMESH_DATABASE_URL: 'mysql://x' }), (err: unknown) => err instanceof ConfigError && err.key === 'STAGEMESH_DATABASE_URL');
    assert.throws(() => resolveMeshConfig({}, { STAGEMESH_DATABASE_SCHEMA: 'Drop Table' }), ConfigError);
  });

  it('names the variable holding a bad value', () => {
    assert.throws(() => resolveMeshConfig({}, { STAGEMESH_GRPC_PORT: 'abc' }), (err: unknown) => err instanceof ConfigError && err.key === 'STAGEMESH_GRPC_PORT' && /port number/.test(err.message));
  });

  it('names the flag holding a bad value', () => {
    assert.throws(() => resolveMeshConfig({ logLevel: 'loud' }, {}), (err: unknown) => err instanceof ConfigError && err.key === '--log-level');
  });

  it('refuses unknown settings in the file', () => {
    assert.throws(() => resolveMeshConfig({ config: file('grpc_prot: 1') }, {}), (err: unknown) => err instanceof ConfigError && err.key === 'grpc_prot');
  });

  it('refuses a file that is not a YAML mapping, or is missing', () => {
    assert.throws(() => resolveMeshConfig({ config: file('- a') }, {}), ConfigError);
    assert.throws(() => resolveMeshConfig({ config: file('a: [') }, {}), ConfigError);
    assert.throws(() => resolveMeshConfig({ config: join(dir, 'missing.yaml') }, {}), ConfigError);
    assert.equal(resolveMeshConfig({ config: file('') }, {}).grpcPort, 50051);
  });
});
