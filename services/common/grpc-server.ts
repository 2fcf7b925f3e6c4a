import { readFileSync } from 'node:fs';
import { Server, ServerCredentials, type ServiceDefinition, type UntypedHandleCall, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import type { PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import { descriptorSetPath } from './paths.js';
import { GRPC_CHANNEL_OPTIONS } from './channel-options.js';
import { traceServiceHandlers } from './telemetry.js';
import type { ServiceName } from './proto.js';

/** One service to serve: its generated definition and its handlers. */
export interface ServiceRegistration {
  name: ServiceName;
  definition: ServiceDefinition;
  /** Handlers by method name; a missing method answers UNIMPLEMENTED (grpc-js supplies that handler). */
  implementation: { [method: string]: UntypedHandleCall | undefined };
}

export interface GrpcServerOptions {
  /** @default "127.0.0.1" */
  host?: string;
  /** 0 picks a free port. @default 0 */
  port?: number;
  logger: Logger;
  services: ServiceRegistration[];
  /** How long stop() waits for in-flight calls before cancelling them. @default 10000 */
  shutdownTimeoutMs?: number;
}

export type GrpcServerState = 'serving' | 'stopping' | 'stopped';

let reflectionPackage: PackageDefinition | undefined;

/**
 * The raw FileDescriptorProtos of a FileDescriptorSet (field 1, repeated),
 * kept byte for byte so reflection serves each file with its real name,
 * dependency list and options (such as google.api.http).
 */
function filesOfDescriptorSet(bytes: Uint8Array): Uint8Array[] {
  const reader = new BinaryReader(bytes);
  const files: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) files.push(reader.bytes());
    else reader.skip(wireType);
  }
  return files;
}

/**
 * The stagemesh contracts plus grpc.health.v1 (both in buf's descriptor set),
 * as reflection describes them. @grpc/reflection reads only the
 * `fileDescriptorProtos` of each entry, so the files are handed over as built.
 */
function reflectionPackageDefinition(): PackageDefinition {
  reflectionPackage ??= {
    'stagemesh.v1': { fileDescriptorProtos: filesOfDescriptorSet(readFileSync(descriptorSetPath())) } as unknown as PackageDefinition[string],
  };
  return reflectionPackage;
}

/**
 * A grpc-js server with what every stagemesh process serves: its services,
 * `grpc.health.v1.Health` with one status per service name, and server
 * reflection (v1 and v1alpha), so grpcurl, ghz and Consul checks work unchanged.
 */
export class GrpcServer {
  #state: GrpcServerState = 'serving';
  #stopping?: Promise<void>;
  readonly #server: Server;
  readonly #health: HealthImplementation;
  readonly #options: GrpcServerOptions;
  readonly #names: ServiceName[];

  private constructor(server: Server, health: HealthImplementation, readonly port: number, options: GrpcServerOptions) {
    this.#server = server;
    this.#health = health;
    this.#options = options;
    this.#names = options.services.map((s) => s.name);
  }

  /** Binds and starts serving; every service reports SERVING once this resolves. */
  static async start(options: GrpcServerOptions): Promise<GrpcServer> {
    const server = new Server(GRPC_CHANNEL_OPTIONS);
    // Unary calls run in a server span continuing the caller's trace (a no-op while tracing is off).
    for (const service of options.services) server.addService(service.definition, traceServiceHandlers(service.definition, service.implementation) as UntypedServiceImplementation);
    const health = new HealthImplementation({ '': 'NOT_SERVING' });
    health.addToServer(server);
    new ReflectionService(reflectionPackageDefinition()).addToServer(server);
    const host = options.host ?? '127.0.0.1';
    const address = host.includes(':') ? `[${host}]:${options.port ?? 0}` : `${host}:${options.port ?? 0}`;
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(address, ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
    );
    const grpcServer = new GrpcServer(server, health, port, options);
    grpcServer.setServing(true);
    return grpcServer;
  }

  get state(): GrpcServerState {
    return this.#state;
  }

  /** Sets every registered service (and the overall "" status) to SERVING or NOT_SERVING. */
  setServing(serving: boolean): void {
    const status = serving ? 'SERVING' : 'NOT_SERVING';
    this.#health.setStatus('', status);
    for (const name of this.#names) this.#health.setStatus(name, status);
  }

  /**
   * Stops accepting calls, waits for in-flight calls up to the shutdown
   * timeout, then cancels what is left. Safe to call twice: returns the same promise.
   */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#state = 'stopping';
      this.setServing(false);
      const timeoutMs = this.#options.shutdownTimeoutMs ?? 10_000;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.#options.logger.warn({ timeoutMs }, 'in-flight gRPC calls did not finish in time; cancelling them');
          this.#server.forceShutdown();
          resolve();
        }, timeoutMs);
        this.#server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      this.#state = 'stopped';
    })();
    return this.#stopping;
  }

  /** Cancels every call at once (used when long-lived streams must end before tryShutdown can finish). */
  forceStop(): void {
    this.#server.forceShutdown();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
