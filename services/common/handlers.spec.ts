import assert from 'node:assert/strict';
import { once } from 'node:events';
import { credentials, makeGenericClientConstructor, Server, ServerCredentials, type ServiceDefinition, type ServiceError } from '@grpc/grpc-js';
import { unary } from './handlers.js';
import { createLogger } from './logger.js';

const json = {
  serialize: (value: unknown) => Buffer.from(JSON.stringify(value)),
  deserialize: (bytes: Buffer) => JSON.parse(bytes.toString()) as unknown,
};
const definition: ServiceDefinition = {
  wait: {
    path: '/test.Handlers/Wait',
    requestStream: false,
    responseStream: false,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  },
};

describe('unary()', () => {
  let server: Server;
  let client: InstanceType<ReturnType<typeof makeGenericClientConstructor>>;
  const signals: AbortSignal[] = [];

  before(async () => {
    server = new Server();
    server.addService(definition, {
      wait: unary(createLogger({ level: 'silent' }), async (request: { ms: number }, signal) => {
        signals.push(signal);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, request.ms);
          signal.addEventListener('abort', () => (clearTimeout(timer), resolve()));
        });
        return { aborted: signal.aborted };
      }),
    });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    client = new (makeGenericClientConstructor(definition, 'Handlers'))(`127.0.0.1:${port}`, credentials.createInsecure());
  });

  after(() => {
    client?.close();
    server?.forceShutdown();
  });

  it('leaves the signal of an answered call alone', async () => {
    const answer = await new Promise<unknown>((resolve, reject) => client.wait({ ms: 0 }, (err: ServiceError | null, value: unknown) => (err ? reject(err) : resolve(value))));
    assert.deepEqual(answer, { aborted: false });
    // grpc-js reports 'cancelled' on the server a moment after the answer went out.
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(signals.at(-1)!.aborted, false);
  });

  it('aborts the signal when the client cancels before the answer', async () => {
    const call = client.wait({ ms: 10_000 }, () => undefined);
    while (signals.length < 2) await new Promise((resolve) => setTimeout(resolve, 5));
    call.cancel();
    await once(signals[1]!, 'abort');
    assert.equal(signals[1]!.aborted, true);
  });
});
