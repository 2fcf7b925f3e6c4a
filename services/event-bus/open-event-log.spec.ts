import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { UnavailableError } from '../common/errors.js';
import { JetStreamEventLog } from './jetstream-event-log.js';
import { MemoryEventLog } from './memory-event-log.js';
import { openEventLog } from './open-event-log.js';

describe('openEventLog()', () => {
  it('opens the in-process log for event_bus: memory', async () => {
    const log = await openEventLog({ eventBus: 'memory', natsUrl: 'nats://127.0.0.1:4222' });
    assert.ok(log instanceof MemoryEventLog);
    await log.close();
  });

  it('says which NATS server it could not reach for event_bus: jetstream', async () => {
    await assert.rejects(openEventLog({ eventBus: 'jetstream', natsUrl: 'nats://127.0.0.1:1' }, { jetstream: { connectTimeoutMs: 1_000 } }), (err: unknown) => err instanceof UnavailableError && /nats:\/\/127\.0\.0\.1:1/.test(err.message));
  });

  it('opens JetStream on the configured server when it is reachable', async function () {
    const id = randomUUID().replace(/-/g, '').slice(0, 12);
    let log: JetStreamEventLog;
    try {
      log = (await openEventLog({ eventBus: 'jetstream', natsUrl: process.env.STAGEMESH_NATS_URL ?? 'nats://127.0.0.1:4222' }, { jetstream: { stream: `SMOPEN_${id}`, subjectPrefix: `smopen.${id}`, connectTimeoutMs: 2_000 } })) as JetStreamEventLog;
    } catch (err) {
      if (process.env.CI === 'true') throw err;
      console.log(`      skipped: no NATS JetStream here (${(err as Error).message})`);
      this.skip();
    }
    try {
      assert.equal(log.backend, 'jetstream');
      assert.equal(log.options.stream, `SMOPEN_${id}`);
    } finally {
      await log.destroy();
      await log.close();
    }
  });
});
