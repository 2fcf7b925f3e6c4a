import { createMeshClients, type MeshClients } from '../services/common/grpc-client.js';
import { CliError } from './cli-error.js';
import { describeCallError } from './output.js';

/**
 * Runs a command's work against the mesh at `address`: `signal` aborts on
 * SIGINT or SIGTERM (Ctrl-C ends a live view cleanly), call errors become
 * readable CliErrors, and the clients are closed afterwards.
 */
export async function withMesh<T>(address: string, work: (clients: MeshClients, signal: AbortSignal) => Promise<T>): Promise<T> {
  const clients = createMeshClients(address);
  const controller = new AbortController();
  const interrupt = () => controller.abort();
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  try {
    return await work(clients, controller.signal);
  } catch (err) {
    throw err instanceof CliError ? err : describeCallError(err, address);
  } finally {
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
    clients.close();
  }
}
