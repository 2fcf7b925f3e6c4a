import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { status } from '@grpc/grpc-js';
import { FIELD_PATH_METADATA, isServiceError } from '../services/common/grpc-status.js';
import { callUnary, type MeshClients } from '../services/common/grpc-client.js';
import type { Logger } from '../services/common/logger.js';
import {
  GetRunRequest,
  GetRunResponse,
  ListPipelinesResponse,
  ListRunsRequest,
  ListRunsResponse,
  RegisterPipelineRequest,
  RegisterPipelineResponse,
  SubmitRunRequest,
  SubmitRunResponse,
  GetPipelineResponse,
  ListBaselinesResponse,
  QueryRequest,
  QueryResponse,
  SetBaselineRequest,
  SetBaselineResponse,
} from '../services/common/proto.js';
import { reportFromStatusError } from '../services/compliance/admission.js';
import { Report } from '../services/common/proto.js';
import { httpStatusOf } from './http-status.js';

/** Largest request body the edge reads. */
const MAX_BODY_BYTES = 2 * 1024 * 1024;

export interface HttpEdgeOptions {
  /** @default "127.0.0.1" */
  host?: string;
  /** 0 picks a free port. */
  port: number;
  clients: MeshClients;
  logger: Logger;
  /** Serves `GET /metrics` in the Prometheus text format when given (the metrics service's exposition). */
  metrics?: MetricsExposition;
}

/** A source of Prometheus text. */
export interface MetricsExposition {
  readonly contentType: string;
  text(): Promise<string>;
}

type Handler = (params: Record<string, string>, body: unknown, query: URLSearchParams) => Promise<unknown>;

interface Route {
  method: string;
  pattern: RegExp;
  handler: Handler;
}

/** An HTTP error with the status to answer and a field path for bad input. */
class HttpError extends Error {
  constructor(
    readonly httpStatus: number,
    message: string,
    readonly fieldPath = '',
  ) {
    super(message);
  }
}

async function readJson(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, `request body over ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  if (size === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new HttpError(400, `request body is not JSON: ${(err as Error).message}`, 'body');
  }
}

function decode<T>(fromJSON: (o: unknown) => T, body: unknown): T {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'request body must be a JSON object', 'body');
  return fromJSON(body);
}

/** Answers a Prometheus scrape. */
async function serveMetrics(metrics: MetricsExposition, response: ServerResponse, logger: Logger): Promise<void> {
  try {
    const text = await metrics.text();
    response.writeHead(200, { 'content-type': metrics.contentType });
    response.end(text);
  } catch (err) {
    logger.error({ err }, 'collecting metrics failed');
    response.writeHead(500, { 'content-type': 'text/plain' });
    response.end('collecting metrics failed\n');
  }
}

/**
 * The Node HTTP edge of the embedded profile: HTTP/JSON for the public RPCs
 * (the same routes as their google.api.http annotations), answered by calling
 * the services over gRPC. This release serves health, pipelines, runs,
 * metrics and baselines, and `/metrics` for Prometheus.
 */
export class HttpEdge {
  #stopping?: Promise<void>;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(options: HttpEdgeOptions): Promise<HttpEdge> {
    const { clients, logger } = options;
    const scheduler = clients.scheduler;
    const routes: Route[] = [
      { method: 'GET', pattern: /^\/healthz$/, handler: async () => ({ status: 'SERVING' }) },
      {
        method: 'POST',
        pattern: /^\/v1\/pipelines$/,
        handler: async (_, body) => RegisterPipelineResponse.toJSON(await callUnary(scheduler.registerPipeline.bind(scheduler), decode(RegisterPipelineRequest.fromJSON, body))),
      },
      {
        method: 'GET',
        pattern: /^\/v1\/pipelines$/,
        handler: async (_, __, q) =>
          ListPipelinesResponse.toJSON(await callUnary(scheduler.listPipelines.bind(scheduler), { pageSize: Number(q.get('pageSize') ?? 0) || 0, pageToken: q.get('pageToken') ?? '' })),
      },
      {
        method: 'GET',
        pattern: /^\/v1\/pipelines\/(?<name>[^/]+)$/,
        handler: async (p, __, q) => GetPipelineResponse.toJSON(await callUnary(scheduler.getPipeline.bind(scheduler), { name: p.name!, version: q.get('version') ?? '' })),
      },
      {
        method: 'POST',
        pattern: /^\/v1\/runs$/,
        handler: async (_, body) => SubmitRunResponse.toJSON(await callUnary(scheduler.submitRun.bind(scheduler), decode(SubmitRunRequest.fromJSON, body))),
      },
      {
        method: 'GET',
        pattern: /^\/v1\/runs$/,
        handler: async (_, __, q) => ListRunsResponse.toJSON(await callUnary(scheduler.listRuns.bind(scheduler), ListRunsRequest.fromJSON(Object.fromEntries(q)))),
      },
      {
        method: 'GET',
        pattern: /^\/v1\/runs\/(?<runId>[^/:]+)$/,
        handler: async (p, __, q) => GetRunResponse.toJSON(await callUnary(scheduler.getRun.bind(scheduler), GetRunRequest.fromJSON({ ...Object.fromEntries(q), runId: p.runId }))),
      },
      {
        method: 'GET',
        pattern: /^\/v1\/metrics$/,
        handler: async (_, __, q) => QueryResponse.toJSON(await callUnary(clients.metrics.query.bind(clients.metrics), QueryRequest.fromJSON(Object.fromEntries(q)))),
      },
      {
        method: 'GET',
        pattern: /^\/v1\/baselines$/,
        handler: async () => ListBaselinesResponse.toJSON(await callUnary(clients.metrics.listBaselines.bind(clients.metrics), {})),
      },
      {
        method: 'POST',
        pattern: /^\/v1\/baselines$/,
        handler: async (_, body) => SetBaselineResponse.toJSON(await callUnary(clients.metrics.setBaseline.bind(clients.metrics), decode(SetBaselineRequest.fromJSON, body))),
      },
    ];

    const server = createServer((request, response) => void handle(request, response));
    async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
      const url = new URL(request.url ?? '/', 'http://edge');
      if (url.pathname === '/metrics' && request.method === 'GET' && options.metrics) return serveMetrics(options.metrics, response, logger);
      let code = 200;
      let payload: unknown;
      try {
        const matching = routes.filter((r) => r.pattern.test(url.pathname));
        const route = matching.find((r) => r.method === request.method);
        if (!route) throw new HttpError(matching.length ? 405 : 404, matching.length ? `method ${request.method} not allowed` : `no route for ${url.pathname}`);
        const params = Object.fromEntries(
          Object.entries(url.pathname.match(route.pattern)?.groups ?? {}).map(([k, v]) => {
            try {
              return [k, decodeURIComponent(v)];
            } catch {
              throw new HttpError(400, `path segment "${v}" is not valid percent-encoding`, k);
            }
          }),
        );
        const body = request.method === 'POST' || request.method === 'PUT' ? await readJson(request) : undefined;
        payload = await route.handler(params, body, url.searchParams);
      } catch (err) {
        if (err instanceof HttpError) {
          code = err.httpStatus;
          payload = { error: { code: err.httpStatus, message: err.message, ...(err.fieldPath ? { field_path: err.fieldPath } : {}) } };
        } else if (isServiceError(err)) {
          code = httpStatusOf(err.code);
          const fieldPath = err.metadata?.get(FIELD_PATH_METADATA)[0];
          payload = { error: { code: err.code, status: status[err.code], message: err.details, ...(fieldPath ? { field_path: String(fieldPath) } : {}) } };
          // A pipeline refused by the compliance gate: 422 with the readable report.
          const report = err.code === status.FAILED_PRECONDITION ? reportFromStatusError(err) : undefined;
          if (report) {
            code = 422;
            payload = { ...(payload as object), report: Report.toJSON(report) };
          }
        } else {
          logger.error({ err }, 'edge request failed');
          code = 500;
          payload = { error: { code: 500, message: 'internal error' } };
        }
      }
      response.writeHead(code, { 'content-type': 'application/json' });
      response.end(JSON.stringify(payload));
    }

    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host ?? '127.0.0.1', () => {
        const address = server.address();
        resolve(typeof address === 'object' && address ? address.port : options.port);
      });
    });
    return new HttpEdge(server, port);
  }

  /** Stops accepting connections and closes idle ones. Safe to call twice. */
  stop(): Promise<void> {
    this.#stopping ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
    return this.#stopping;
  }
}
