import { credentials, Metadata, type CallOptions, type ClientUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { GRPC_CHANNEL_OPTIONS } from './channel-options.js';
import { CONSUL_SERVICE_NAMES, serviceTarget } from './discovery.js';
import { tracingClientInterceptor } from './telemetry.js';
import {
  ComplianceClient,
  CoordinatorClient,
  EventBusClient,
  MetricsClient,
  SchedulerClient,
} from './proto.js';

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

export interface CallOpts {
  signal?: AbortSignal;
  /** Milliseconds until the call's deadline. */
  timeoutMs?: number;
}

/**
 * Calls a unary method of a generated client as a promise, with cancellation
 * through `signal` and an optional deadline. Errors keep their gRPC status code.
 */
export function callUnary<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, opts: CallOpts = {}): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    const options: Partial<CallOptions> = opts.timeoutMs !== undefined ? { deadline: Date.now() + opts.timeoutMs } : {};
    const call = method(request, new Metadata(), options, (err, response) => {
      opts.signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(response);
    });
    const onAbort = () => call.cancel();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Clients of the five services: at one address (the embedded profile, or a gateway), or each found through Consul. */
export interface MeshClients {
  scheduler: SchedulerClient;
  coordinator: CoordinatorClient;
  eventBus: EventBusClient;
  compliance: ComplianceClient;
  metrics: MetricsClient;
  close(): void;
}

/**
 * Opens clients of every service at `address`, plaintext: "host:port", or
 * "consul://[agent host:port]" for each service's healthy instances in
 * Consul, round-robin (see serviceTarget).
 */
export function createMeshClients(address: string): MeshClients {
  const creds = credentials.createInsecure();
  // Traced unary calls carry the caller's trace context (a no-op while tracing is off).
  const options = { ...GRPC_CHANNEL_OPTIONS, interceptors: [tracingClientInterceptor] };
  const clients = {
    scheduler: new SchedulerClient(serviceTarget(address, CONSUL_SERVICE_NAMES.scheduler), creds, options),
    coordinator: new CoordinatorClient(serviceTarget(address, CONSUL_SERVICE_NAMES.coordinator), creds, options),
    eventBus: new EventBusClient(serviceTarget(address, CONSUL_SERVICE_NAMES.eventBus), creds, options),
    compliance: new ComplianceClient(serviceTarget(address, CONSUL_SERVICE_NAMES.compliance), creds, options),
    metrics: new MetricsClient(serviceTarget(address, CONSUL_SERVICE_NAMES.metrics), creds, options),
  };
  return {
    ...clients,
    close: () => Object.values(clients).forEach((c) => c.close()),
  };
}
