import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveMeshConfig, type MeshConfig } from '../../services/common/config.js';
import { callUnary, createMeshClients, type MeshClients } from '../../services/common/grpc-client.js';
import { createLogger } from '../../services/common/logger.js';
import { EmbeddedMesh, type EmbeddedMeshOptions } from '../../services/mesh/embedded-mesh.js';
import { GetRunRequest, RunAndWaitRequest, RunState, type Run, type SubmitRunRequest } from '../../services/common/proto.js';

/** An embedded mesh on free ports with its own data folder, for one test file. */
export interface TestMesh {
  mesh: EmbeddedMesh;
  clients: MeshClients;
  address: string;
  httpUrl: string;
  dataDir: string;
  /** Stops the mesh (keeping its data); safe to call twice. */
  stop(): Promise<void>;
  /** Stops the mesh and removes its data folder. */
  destroy(): Promise<void>;
}

/** Starts an embedded mesh on port 0 in a temporary (or the given) data folder. */
export async function startTestMesh(overrides: Partial<MeshConfig> = {}, options: EmbeddedMeshOptions = {}): Promise<TestMesh> {
  const dataDir = overrides.dataDir ?? mkdtempSync(join(tmpdir(), 'stagemesh-test-'));
  const config: MeshConfig = { ...resolveMeshConfig({}, {}), grpcPort: 0, httpPort: 0, workerCapacity: 4, shutdownTimeoutMs: 5_000, ...overrides, dataDir };
  const mesh = await EmbeddedMesh.start(config, createLogger({ level: process.env.STAGEMESH_TEST_LOG_LEVEL === undefined ? 'silent' : (process.env.STAGEMESH_TEST_LOG_LEVEL as 'info') }), options);
  const address = `127.0.0.1:${mesh.grpcPort}`;
  const clients = createMeshClients(address);
  const stop = async () => {
    clients.close();
    await mesh.stop();
  };
  return {
    mesh,
    clients,
    address,
    httpUrl: `http://127.0.0.1:${mesh.httpPort}`,
    dataDir,
    stop,
    destroy: async () => {
      await stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A submit request for an inline YAML pipeline. */
export function inline(document: string, fields: Partial<SubmitRunRequest> = {}): SubmitRunRequest {
  return { document, inputs: {}, idempotencyKey: '', priority: 0, deadline: '', labels: {}, ...fields };
}

/** Submits and waits (bounded) for the run to finish. */
export async function runToEnd(clients: MeshClients, request: SubmitRunRequest, waitTimeout = '20s'): Promise<Run> {
  const { run } = await callUnary(clients.scheduler.runAndWait.bind(clients.scheduler), RunAndWaitRequest.fromPartial({ submit: request, waitTimeout }), { timeoutMs: 30_000 });
  return run!;
}

/** Polls GetRun until `predicate` holds (bounded by `timeoutMs`). */
export async function waitForRun(clients: MeshClients, runId: string, predicate: (run: Run) => boolean, timeoutMs = 10_000): Promise<Run> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { run } = await callUnary(clients.scheduler.getRun.bind(clients.scheduler), GetRunRequest.fromPartial({ runId }));
    if (predicate(run!)) return run!;
    if (Date.now() > deadline) throw new Error(`run ${runId} did not reach the expected state in ${timeoutMs} ms (state ${RunState[run!.state]})`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
