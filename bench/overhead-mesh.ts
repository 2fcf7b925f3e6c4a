// The mesh process of the observability_overhead measurement: `stagemesh start`
// with one more switch, `--metrics off`, which keeps the metrics service from
// following events (EmbeddedMeshOptions.metrics; `stagemesh start` has no such
// flag because only this measurement needs it). Tracing follows the OTEL_*
// variables, as in `stagemesh start`. Prints the same ready line.
import { parseArgs } from 'node:util';
import { resolveMeshConfig } from '../services/common/config.js';
import { createLogger } from '../services/common/logger.js';
import { startTelemetry, stopTelemetry, TracedComponent } from '../services/common/telemetry.js';
import { EmbeddedMesh } from '../services/mesh/embedded-mesh.js';

const { values } = parseArgs({
  options: {
    'grpc-port': { type: 'string' },
    'http-port': { type: 'string' },
    'data-dir': { type: 'string' },
    'log-level': { type: 'string' },
    'worker-capacity': { type: 'string' },
    metrics: { type: 'string', default: 'on' },
  },
});
if (values.metrics !== 'on' && values.metrics !== 'off') throw new Error(`--metrics expects on or off, got "${values.metrics}"`);
const config = resolveMeshConfig({
  grpcPort: values['grpc-port'],
  httpPort: values['http-port'],
  dataDir: values['data-dir'],
  logLevel: values['log-level'],
  workerCapacity: values['worker-capacity'],
});
const logger = createLogger({ level: config.logLevel });
await startTelemetry({ processComponent: TracedComponent.EDGE });
const mesh = await EmbeddedMesh.start(config, logger, { metrics: values.metrics === 'on' });
process.stdout.write(`stagemesh ready: gRPC ${config.host}:${mesh.grpcPort}, HTTP http://${config.host}:${mesh.httpPort}/healthz, data ${config.dataDir}, metrics ${values.metrics}\n`);
const stop = () => void mesh.stop();
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
await mesh.closed;
await stopTelemetry();
