// Starts a throwaway single-node Consul agent (`consul agent -dev`) for tests.
// Every listener is on 127.0.0.1 and on a port chosen at random, so several
// test runs can share a machine.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { freePorts, startManaged, toolPath, waitUntil, type ManagedProcess } from './tools.js';

export interface ConsulAgent {
  /** Base URL of the agent's HTTP API, e.g. http://127.0.0.1:41234 */
  httpAddr: string;
  /** Stops the agent and removes its files. Idempotent. */
  stop(): Promise<void>;
  /** Everything the agent printed so far (for diagnostics). */
  output(): string;
}

export interface StartConsulOptions {
  /** Path of the consul binary; defaults to .tools/bin/consul. */
  bin?: string;
  /** How long to wait for the agent to elect itself leader. */
  readyTimeoutMs?: number;
}

export async function startConsul(opts: StartConsulOptions = {}): Promise<ConsulAgent> {
  const bin = opts.bin ?? toolPath('consul');
  const [http, dns, serfLan, serfWan, server, grpc] = (await freePorts(6)) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const dir = mkdtempSync(join(tmpdir(), 'stagemesh-consul-'));

  // -dev keeps all state in memory; the data dir only holds the agent's
  // small scratch files and is removed on stop().
  const args = [
    'agent',
    '-dev',
    '-node',
    `stagemesh-test-${process.pid}-${String(http)}`,
    '-bind',
    '127.0.0.1',
    '-client',
    '127.0.0.1',
    '-advertise',
    '127.0.0.1',
    '-data-dir',
    dir,
    '-http-port',
    String(http),
    '-https-port',
    '-1',
    '-dns-port',
    String(dns),
    '-serf-lan-port',
    String(serfLan),
    '-serf-wan-port',
    String(serfWan),
    '-server-port',
    String(server),
    '-grpc-port',
    String(grpc),
    '-grpc-tls-port',
    '-1',
    '-log-level',
    'info',
  ];
  const proc: ManagedProcess = startManaged('consul', bin, args, [dir]);
  const httpAddr = `http://127.0.0.1:${String(http)}`;

  try {
    await waitUntil(
      'consul to elect a leader (GET /v1/status/leader)',
      async () => {
        const res = await fetch(`${httpAddr}/v1/status/leader`, { signal: AbortSignal.timeout(2000) });
        if (!res.ok) throw new Error(`HTTP ${String(res.status)}`);
        const leader = (await res.json()) as unknown;
        return typeof leader === 'string' && leader !== '' ? leader : undefined;
      },
      { timeoutMs: opts.readyTimeoutMs ?? 30_000, intervalMs: 250, proc },
    );
  } catch (err) {
    await proc.stop();
    throw err;
  }

  return { httpAddr, stop: () => proc.stop(), output: () => proc.output() };
}
