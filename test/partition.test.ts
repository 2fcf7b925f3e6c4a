import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { credentials } from '@grpc/grpc-js';
import { CONSUL_SERVICE_NAMES } from '../services/common/discovery.js';
import { callUnary } from '../services/common/grpc-client.js';
import { CoordinatorClient, ListNodesRequest, RegisterPipelineRequest, SubmitRunRequest, type Node } from '../services/common/proto.js';
import { startTestCluster, type TestCluster } from './support/cluster.js';
import { childEnv, repoRoot, sleep, waitUntil } from './support/tools.js';

/** A network namespace joined to this one by a veth pair, made and removed by the test. */
interface Namespace {
  name: string;
  /** The host's end of the pair, and its address (the services listen there). */
  hostLink: string;
  hostAddress: string;
  remove(): void;
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });

/**
 * Makes the namespace, or says why it cannot (not root, no `ip`): the test
 * then skips with that reason, except under CI, where it fails.
 */
function makeNamespace(): Namespace | string {
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  const id = randomBytes(3).toString('hex');
  const name = `smpart-${id}`;
  const hostLink = `smh${id}`;
  const nsLink = `smn${id}`;
  // 10.231.<a>.<b>/30 from the random id: concurrent runs on one machine do not clash.
  const subnet = `10.231.${parseInt(id.slice(0, 2), 16)}.${(parseInt(id.slice(2, 4), 16) & 0x3f) * 4}`;
  const [a, b, c, d] = subnet.split('.').map(Number) as [number, number, number, number];
  const hostAddress = `${a}.${b}.${c}.${d + 1}`;
  const nsAddress = `${a}.${b}.${c}.${d + 2}`;
  try {
    ip('netns', 'add', name);
  } catch (err) {
    return `cannot create a network namespace: ${(err as Error).message}`;
  }
  const remove = () => {
    try {
      ip('link', 'del', hostLink);
    } catch {
      /* gone with the namespace */
    }
    try {
      ip('netns', 'del', name);
    } catch {
      /* already removed */
    }
  };
  try {
    ip('link', 'add', hostLink, 'type', 'veth', 'peer', 'name', nsLink);
    ip('link', 'set', nsLink, 'netns', name);
    ip('addr', 'add', `${hostAddress}/30`, 'dev', hostLink);
    ip('link', 'set', hostLink, 'up');
    ip('netns', 'exec', name, 'ip', 'addr', 'add', `${nsAddress}/30`, 'dev', nsLink);
    ip('netns', 'exec', name, 'ip', 'link', 'set', nsLink, 'up');
    ip('netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up');
  } catch (err) {
    remove();
    return `cannot set up a veth pair: ${(err as Error).message}`;
  }
  return { name, hostLink, hostAddress, remove };
}

const PIPELINE = `name: partition-fanout
stages:
  - { id: start, framework: noop }
${Array.from({ length: 6 }, (_, i) => `  - { id: p${i}, framework: sleep, needs: [start], run: { duration: 1500ms } }`).join('\n')}
  - { id: end, framework: noop, needs: [${Array.from({ length: 6 }, (_, i) => `p${i}`).join(', ')}] }`;
const STAGES_PER_RUN = 8;

describe('distributed profile - partition: a worker cut off for 10 s', function () {
  this.timeout(240_000);
  let ns: Namespace | undefined;
  let t: TestCluster | undefined;
  let worker: ChildProcess | undefined;

  before(async function () {
    this.timeout(120_000);
    const made = makeNamespace();
    if (typeof made === 'string') {
      if (process.env.CI === 'true') throw new Error(`the partition test is required on CI: ${made}`);
      console.log(`      skipping: ${made}`);
      this.skip();
    }
    ns = made;
    // The services listen on the host's end of the veth pair: the workers here reach them, and so does the one in the namespace.
    t = await startTestCluster(this, { host: ns.hostAddress, schedulers: 1, coordinators: 1, workers: 2, workerCapacity: 8, leaseTtl: '3s' });
  });

  after(async () => {
    if (worker && worker.exitCode === null) {
      const exited = new Promise((resolve) => worker!.once('exit', resolve));
      worker.kill('SIGKILL');
      await exited;
    }
    await t?.stop();
    ns?.remove();
  });

  async function nodes(): Promise<Node[]> {
    const [coordinator] = (await t!.cluster.consul.healthy(CONSUL_SERVICE_NAMES.coordinator)).instances;
    const client = new CoordinatorClient(`${coordinator!.address}:${coordinator!.port}`, credentials.createInsecure());
    try {
      return (await callUnary(client.listNodes.bind(client), ListNodesRequest.fromPartial({}), { timeoutMs: 5_000 })).nodes;
    } finally {
      client.close();
    }
  }

  it('re-leases its stages, refuses and counts its late outcomes, and gives it work again once it is back', async () => {
    const { clients } = t!;
    const [coordinator] = (await t!.cluster.consul.healthy(CONSUL_SERVICE_NAMES.coordinator)).instances;
    // The worker in the namespace cannot reach Consul (on loopback here): it is given the coordinator's address.
    worker = spawn('ip', ['netns', 'exec', ns!.name, process.execPath, `${repoRoot}/bin/stagemesh.js`, '--address', `${coordinator!.address}:${coordinator!.port}`, 'worker', '--node-id', 'worker-cut', '--capacity', '8', '--frameworks', 'noop,sleep'], {
      stdio: 'ignore',
      env: childEnv(),
    });
    await waitUntil('the worker in the namespace to join', async () => ((await nodes()).some((n) => n.nodeId === 'worker-cut') ? true : undefined), { timeoutMs: 20_000, intervalMs: 200 });

    await callUnary(clients.scheduler.registerPipeline.bind(clients.scheduler), RegisterPipelineRequest.fromPartial({ document: PIPELINE }), { timeoutMs: 10_000 });
    const submit = async (count: number) => {
      const ids: string[] = [];
      for (let i = 0; i < count; i++) ids.push((await callUnary(clients.scheduler.submitRun.bind(clients.scheduler), SubmitRunRequest.fromPartial({ pipelineRef: 'partition-fanout' }), { timeoutMs: 10_000 })).run!.runId);
      return ids;
    };
    const first = await submit(12);
    await waitUntil('the worker in the namespace to run stages', async () => ((await nodes()).find((n) => n.nodeId === 'worker-cut')?.running ?? 0) > 0 ? true : undefined, { timeoutMs: 20_000, intervalMs: 50 });

    const cutAt = Date.now();
    ip('link', 'set', ns!.hostLink, 'down');
    try {
      await sleep(10_000);
    } finally {
      ip('link', 'set', ns!.hostLink, 'up');
    }
    const backAt = Date.now();

    // Its late outcomes arrive once the link is back, and are refused.
    const refused = await waitUntil(
      'the late outcomes of the cut-off worker to be refused',
      async () => {
        const n = (await nodes()).find((node) => node.nodeId === 'worker-cut');
        return n && n.refusedOutcomes > 0 ? Number(n.refusedOutcomes) : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    // It takes work again: more runs until it has run stages of them (at most 4 batches of 12).
    const runIds = [...first];
    const allEnded = () =>
      waitUntil(
        'every run to end',
        async () => {
          const [row] = await t!.query<{ open: number }>("SELECT count(*)::int AS open FROM ${schema}.runs WHERE state IN ('PENDING', 'RUNNING')");
          return row!.open === 0 ? true : undefined;
        },
        { timeoutMs: 120_000, intervalMs: 250 },
      );
    const ranAfter = async () =>
      (
        await t!.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM \${schema}.stage_runs WHERE final_attempt->>'node_id' = 'worker-cut' AND (final_attempt->>'finished_at')::timestamptz > $1`,
          [new Date(backAt)],
        )
      )[0]!.n;
    let batches = 0;
    while (batches < 4) {
      runIds.push(...(await submit(12)));
      batches++;
      await allEnded();
      if ((await ranAfter()) > 0) break;
    }
    await allEnded();
    const states = await t!.query<{ state: string; n: number }>('SELECT state, count(*)::int AS n FROM ${schema}.runs GROUP BY state');
    assert.deepEqual(states, [{ state: 'SUCCEEDED', n: runIds.length }]);
    const [once] = await t!.query<{ stages: number; final_ok: number; extra: number }>(
      `SELECT count(*)::int AS stages, count(*) FILTER (WHERE final_attempt->>'state' = 'SUCCEEDED')::int AS final_ok,
              (SELECT count(*) FROM \${schema}.attempts WHERE state = 'SUCCEEDED')::int AS extra
         FROM \${schema}.stage_runs`,
    );
    assert.deepEqual(once, { stages: runIds.length * STAGES_PER_RUN, final_ok: runIds.length * STAGES_PER_RUN, extra: 0 });
    // Stages it held when cut off ran again elsewhere (their lost attempts are recorded) …
    const [relet] = await t!.query<{ n: number }>(`SELECT count(*)::int AS n FROM \${schema}.attempts WHERE node_id = 'worker-cut' AND evidence->>'error' LIKE 'lost:%'`);
    // … and after it came back it ran stages that counted.
    const after = await ranAfter();
    console.log(`      cut for ${backAt - cutAt} ms: ${relet!.n} of its attempts re-leased elsewhere, ${refused} late outcomes refused, ${after} stages run by it after it came back (${batches} batch${batches > 1 ? 'es' : ''} of 12 runs after the cut)`);
    assert.ok(relet!.n > 0, 'no attempt of the cut-off worker was re-leased');
    const node = (await nodes()).find((n) => n.nodeId === 'worker-cut');
    assert.ok(after > 0, `the worker took no work in ${batches} batches of runs after it came back; the coordinator lists it as ${JSON.stringify(node ?? 'gone')}`);
  });
});
