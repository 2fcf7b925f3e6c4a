import {
  InterceptingCall,
  ListenerBuilder,
  RequesterBuilder,
  status as grpcStatus,
  type Interceptor,
  type Metadata,
  type ServiceDefinition,
  type UntypedHandleCall,
} from '@grpc/grpc-js';
import {
  context,
  createContextKey,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
  type Tracer,
} from '@opentelemetry/api';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { Event } from './proto.js';

/**
 * The components whose spans Jaeger shows as services: the five services,
 * the worker, and the processes that are none of them (the edge, the CLI).
 */
export const TracedComponent = {
  SCHEDULER: 'scheduler',
  COORDINATOR: 'coordinator',
  EVENT_BUS: 'event-bus',
  COMPLIANCE: 'compliance',
  METRICS: 'metrics',
  WORKER: 'worker',
  EDGE: 'edge',
  CLI: 'cli',
} as const;
export type TracedComponent = (typeof TracedComponent)[keyof typeof TracedComponent];

/** gRPC service name → the component whose spans its server calls make. */
const COMPONENT_OF_SERVICE: Record<string, TracedComponent> = {
  'stagemesh.v1.Scheduler': TracedComponent.SCHEDULER,
  'stagemesh.v1.Coordinator': TracedComponent.COORDINATOR,
  'stagemesh.v1.EventBus': TracedComponent.EVENT_BUS,
  'stagemesh.v1.Compliance': TracedComponent.COMPLIANCE,
  'stagemesh.v1.Metrics': TracedComponent.METRICS,
};

/**
 * Methods that get no span per call: batches carrying many runs' work (each
 * item carries its own trace context instead: tasks, outcomes, events) and
 * long-lived streams.
 */
const UNTRACED_METHODS = new Set(['EnqueueTasks', 'ReportOutcomes', 'CancelTasks', 'PublishBatch', 'Connect', 'Subscribe', 'Ack', 'Watch', 'WatchRun']);

/** The component on whose behalf the current code runs, carried in the context. */
const COMPONENT_KEY = createContextKey('stagemesh.component');

interface TelemetryState {
  processComponent: TracedComponent;
  /** One tracer provider per component, all feeding one batch span processor. */
  providers: Map<TracedComponent, { getTracer(name: string): Tracer; shutdown(): Promise<void>; forceFlush(): Promise<void> }>;
  sdk: { shutdown(): Promise<void> };
  /** Builds the provider of a component on first use. */
  provider: (component: TracedComponent) => { getTracer(name: string): Tracer; shutdown(): Promise<void>; forceFlush(): Promise<void> };
}

let state: TelemetryState | undefined;
let starting: Promise<boolean> | undefined;

/** True while spans are recorded and exported; every hook checks this first, so tracing off costs one branch. */
export function tracingEnabled(): boolean {
  return state !== undefined;
}

const isTrue = (value: string | undefined) => /^(true|1|yes)$/i.test((value ?? '').trim());

/**
 * Whether the OTEL_* variables ask for traces: an OTLP endpoint
 * (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or
 * an explicit `OTEL_TRACES_EXPORTER` other than `none`, and no
 * `OTEL_SDK_DISABLED=true`.
 */
export function telemetryRequested(env: NodeJS.ProcessEnv = process.env): boolean {
  if (isTrue(env.OTEL_SDK_DISABLED)) return false;
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '').split(',').map((s) => s.trim()).filter((s) => s && s !== 'none');
  if ((env.OTEL_TRACES_EXPORTER ?? '').trim() === 'none') return false;
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || exporters.length > 0);
}

/** The service.name Jaeger shows for a component: `<OTEL_SERVICE_NAME or stagemesh>-<component>`. */
export function serviceNameOf(component: TracedComponent, env: NodeJS.ProcessEnv = process.env): string {
  return `${env.OTEL_SERVICE_NAME || 'stagemesh'}-${component}`;
}

export interface TelemetryOptions {
  /** The component of spans not made on behalf of a service (the CLI, the edge). */
  processComponent: TracedComponent;
}

/**
 * Starts OpenTelemetry in this process when the OTEL_* variables ask for it
 * (see telemetryRequested); otherwise does nothing and resolves to false. The
 * SDK (`@opentelemetry/sdk-node`) is loaded only then. Spans go through one
 * batch span processor to the exporter the variables choose (OTLP over
 * http/protobuf by default, `grpc` or `http/json` through
 * `OTEL_EXPORTER_OTLP_PROTOCOL`, or `console`); each component gets its own
 * tracer provider, so Jaeger shows the scheduler, coordinator, event-bus,
 * compliance, metrics and worker as services even in one process. The
 * sampler (`OTEL_TRACES_SAMPLER`), batch settings (`OTEL_BSP_*`), resource
 * attributes and propagators (`OTEL_PROPAGATORS`) follow the SDK's variables;
 * without OTEL_TRACES_SAMPLER, new traces are sampled up to a rate
 * (tracesPerSecond) and every span follows its parent's decision, so tracing
 * costs next to nothing under load and every run is traced when runs are few.
 */
export function startTelemetry(options: TelemetryOptions): Promise<boolean> {
  if (state) return Promise.resolve(true);
  starting ??= start(options).finally(() => (starting = undefined));
  return starting;
}

async function start(options: TelemetryOptions): Promise<boolean> {
  if (!telemetryRequested()) return false;
  const [{ NodeSDK }, { BasicTracerProvider, BatchSpanProcessor, ConsoleSpanExporter, ParentBasedSampler, SimpleSpanProcessor }, resources, { RateLimitedSampler }] = await Promise.all([
    import('@opentelemetry/sdk-node'),
    import('@opentelemetry/sdk-trace-base'),
    import('@opentelemetry/resources'),
    import('./rate-limited-sampler.js'),
  ]);
  // OTEL_TRACES_SAMPLER, when set, chooses the sampler as the SDK defines it;
  // otherwise runs are traced whole up to a rate (see tracesPerSecond).
  const sampler = process.env.OTEL_TRACES_SAMPLER?.trim() ? undefined : new ParentBasedSampler({ root: new RateLimitedSampler(tracesPerSecond()) });
  const exporters = (process.env.OTEL_TRACES_EXPORTER ?? 'otlp').split(',').map((s) => s.trim()).filter(Boolean);
  const processors: SpanProcessor[] = [];
  for (const name of exporters) {
    if (name === 'console') processors.push(new SimpleSpanProcessor(new ConsoleSpanExporter()));
    else if (name === 'otlp') processors.push(new BatchSpanProcessor(await otlpExporter()));
    else throw new Error(`OTEL_TRACES_EXPORTER: unsupported exporter "${name}" (supported: otlp, console, none)`);
  }
  // Resource attributes from OTEL_RESOURCE_ATTRIBUTES and the host; service.name is set per component.
  const detected = resources.detectResources({ detectors: [resources.envDetector, resources.hostDetector, resources.processDetector] });
  const resourceOf = (component: TracedComponent) =>
    resources.defaultResource().merge(detected).merge(resources.resourceFromAttributes({ 'service.name': serviceNameOf(component), 'service.namespace': 'stagemesh' }));
  // The SDK owns the process: context manager (AsyncLocalStorage), propagators, and the global provider.
  const sdk = new NodeSDK({
    resource: resourceOf(options.processComponent),
    autoDetectResources: false,
    sampler,
    spanProcessors: processors,
    // Metrics go to Prometheus (/metrics), logs to pino: the SDK exports traces only.
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [],
  });
  sdk.start();
  const providers: TelemetryState['providers'] = new Map();
  state = {
    processComponent: options.processComponent,
    providers,
    sdk,
    provider: (component) => {
      let provider = providers.get(component);
      if (!provider) providers.set(component, (provider = new BasicTracerProvider({ resource: resourceOf(component), spanProcessors: processors, sampler })));
      return provider;
    },
  };
  return true;
}

/** New traces a process starts at most per second when OTEL_TRACES_SAMPLER is not set. */
export const DEFAULT_TRACES_PER_SECOND = 10;

/**
 * `STAGEMESH_TRACES_PER_SECOND`: how many new traces (runs, mostly) a process
 * samples per second at most when OTEL_TRACES_SAMPLER is not set, every hop of
 * a sampled run included. @default DEFAULT_TRACES_PER_SECOND
 */
export function tracesPerSecond(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.STAGEMESH_TRACES_PER_SECOND?.trim();
  if (!raw) return DEFAULT_TRACES_PER_SECOND;
  const value = Number(raw);
  if (!(value > 0) || !Number.isFinite(value)) throw new Error(`STAGEMESH_TRACES_PER_SECOND: expected a positive number, got "${raw}"`);
  return value;
}

/** The OTLP trace exporter of OTEL_EXPORTER_OTLP(_TRACES)_PROTOCOL: http/protobuf (default), grpc or http/json. */
async function otlpExporter() {
  const protocol = process.env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL || process.env.OTEL_EXPORTER_OTLP_PROTOCOL || 'http/protobuf';
  if (protocol === 'grpc') return new (await import('@opentelemetry/exporter-trace-otlp-grpc')).OTLPTraceExporter();
  if (protocol === 'http/json') return new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter();
  if (protocol === 'http/protobuf') return new (await import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter();
  throw new Error(`OTEL_EXPORTER_OTLP_PROTOCOL: unsupported protocol "${protocol}" (supported: http/protobuf, grpc, http/json)`);
}

/** Exports every span ended so far (tests, and before a short-lived process exits). */
export async function flushTelemetry(): Promise<void> {
  if (!state) return;
  await Promise.all([...state.providers.values()].map((p) => p.forceFlush()));
}

/**
 * Exports what is left and stops tracing: the global tracer provider, context
 * manager and propagators are unregistered, so tracing is off again.
 */
export async function stopTelemetry(): Promise<void> {
  await starting;
  const current = state;
  if (!current) return;
  state = undefined;
  await Promise.allSettled([current.sdk.shutdown(), ...[...current.providers.values()].map((p) => p.shutdown())]);
  trace.disable();
  context.disable();
  propagation.disable();
}

/** The tracer of a component (a no-op tracer while tracing is off). */
export function tracerOf(component: TracedComponent): Tracer {
  return state ? state.provider(component).getTracer('stagemesh') : trace.getTracer('stagemesh');
}

const metadataGetter: TextMapGetter<Metadata> = {
  keys: (carrier) => Object.keys(carrier.getMap()),
  get: (carrier, key) => {
    const values = carrier.get(key);
    return values.length ? String(values[0]) : undefined;
  },
};
const metadataSetter: TextMapSetter<Metadata> = { set: (carrier, key, value) => carrier.set(key, value) };

/** The W3C `traceparent` of a context ('' when it holds no span or tracing is off). */
export function traceparentOf(ctx: Context = context.active()): string {
  if (!state) return '';
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return carrier.traceparent ?? '';
}

/**
 * True when tracing is on and `traceparent` names a sampled trace (its flags
 * end in an odd hex digit): only then does a hop record a span. A trace the
 * sampler left out is passed on unchanged, so its runs pay for no span
 * objects, context switches or header formatting on their hops.
 */
export function recording(traceparent: string | undefined): traceparent is string {
  return state !== undefined && !!traceparent && (Number.parseInt(traceparent.charAt(traceparent.length - 1), 16) & 1) === 1;
}

/** The context a `traceparent` names (the root context for '' or garbage). */
export function contextOf(traceparent: string | undefined): Context {
  if (!state || !traceparent) return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, { traceparent });
}

/** A span in flight for one piece of work, with what it needs to end it. */
export interface TracedWork {
  readonly span: Span;
  /** The traceparent of this span, for the next hop. */
  readonly traceparent: string;
  /** The attributes it started with (later hops of the same work repeat them). */
  readonly attributes: Attributes;
}

/**
 * Starts a span of `component` as a child of `parent` (a traceparent, or the
 * active context). Undefined while tracing is off.
 */
export function startWork(component: TracedComponent, name: string, parent: string | undefined, attributes: Attributes, kind = SpanKind.INTERNAL): TracedWork | undefined {
  if (!state) return undefined;
  const parentContext = parent === undefined ? context.active() : contextOf(parent);
  const span = tracerOf(component).startSpan(name, { kind, attributes }, parentContext);
  return { span, traceparent: traceparentOf(trace.setSpan(parentContext, span)), attributes };
}

/** Ends a span started by startWork, marking it failed when `error` is given. */
export function endWork(work: TracedWork | undefined, attributes: Attributes = {}, error?: string): void {
  if (!work) return;
  work.span.setAttributes(attributes);
  if (error) work.span.setStatus({ code: SpanStatusCode.ERROR, message: error });
  work.span.end();
}

/**
 * Records one hop of asynchronous work that takes no time of its own (a task
 * handed on, an outcome passed back): a span under `traceparent`, returning
 * the traceparent the next hop continues from. Without a traceparent or
 * while tracing is off it returns `traceparent` unchanged.
 */
export function traceHop(component: TracedComponent, name: string, traceparent: string, attributes: Attributes): string {
  if (!recording(traceparent)) return traceparent;
  const work = startWork(component, name, traceparent, attributes);
  work!.span.end();
  return work!.traceparent;
}

/** The event with its `traceparent` header set (unchanged when there is none to set). */
export function withTraceparent(event: Event, traceparent: string): Event {
  if (!traceparent) return event;
  event.headers = { ...event.headers, traceparent };
  return event;
}

/** Attributes naming an event on a span. */
function eventAttributes(event: Event): Attributes {
  const attributes: Attributes = { 'messaging.system': 'stagemesh', 'messaging.destination.name': event.type };
  if (event.attributes.run_id) attributes['stagemesh.run_id'] = event.attributes.run_id;
  if (event.attributes.stage_id) attributes['stagemesh.stage_id'] = event.attributes.stage_id;
  if (event.attributes.pipeline) attributes['stagemesh.pipeline'] = event.attributes.pipeline;
  return attributes;
}

/**
 * Runs `handle` for a delivered event inside a span of `component` that
 * continues the event's trace (its `traceparent` header); events without one
 * are handled untraced. A returned promise ends the span when it settles.
 */
export function handleTracedEvent<T>(component: TracedComponent, name: string, event: Event, handle: () => T): T {
  const traceparent = event.headers?.traceparent;
  if (!recording(traceparent)) return handle();
  const work = startWork(component, name, traceparent, eventAttributes(event), SpanKind.CONSUMER)!;
  const ctx = context.active();
  const fail = (err: unknown) => endWork(work, {}, (err as Error)?.message ?? String(err));
  try {
    const result = context.with(trace.setSpan(withComponent(ctx, component), work.span), handle);
    if (result instanceof Promise) result.then(() => endWork(work), fail);
    else endWork(work);
    return result;
  } catch (err) {
    fail(err);
    throw err;
  }
}

/**
 * The event as it goes into the log: a span of the event bus under the
 * publisher's `traceparent`, which the header then names, so subscribers
 * continue from the bus (publisher → event-bus → subscriber).
 */
export function traceAppend(event: Event): Event {
  const traceparent = event.headers?.traceparent;
  if (!recording(traceparent)) return event;
  const next = traceHop(TracedComponent.EVENT_BUS, `publish ${event.type}`, traceparent, eventAttributes(event));
  return { ...event, headers: { ...event.headers, traceparent: next } };
}

function withComponent(ctx: Context, component: TracedComponent): Context {
  return ctx.setValue(COMPONENT_KEY, component);
}

function componentOf(ctx: Context): TracedComponent {
  return (ctx.getValue(COMPONENT_KEY) as TracedComponent | undefined) ?? state?.processComponent ?? TracedComponent.CLI;
}

function splitPath(path: string): { service: string; method: string } {
  const [, service = '', method = ''] = path.split('/');
  return { service, method };
}

const rpcAttributes = (service: string, method: string): Attributes => ({ 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': method });

/**
 * The client half of the gRPC instrumentation: a grpc-js interceptor that
 * makes a client span for each traced unary call (on behalf of the component
 * running it) and sends its W3C trace context in the call metadata.
 */
export const tracingClientInterceptor: Interceptor = (options, nextCall) => {
  const { service, method } = splitPath(options.method_definition.path);
  if (!state || UNTRACED_METHODS.has(method) || options.method_definition.requestStream || options.method_definition.responseStream) return new InterceptingCall(nextCall(options));
  const parent = context.active();
  const span = tracerOf(componentOf(parent)).startSpan(`${service}/${method}`, { kind: SpanKind.CLIENT, attributes: rpcAttributes(service, method) }, parent);
  const requester = new RequesterBuilder()
    .withStart((metadata, _listener, next) => {
      propagation.inject(trace.setSpan(parent, span), metadata, metadataSetter);
      const traced = new ListenerBuilder()
        .withOnReceiveStatus((status, nextStatus) => {
          span.setAttribute('rpc.grpc.status_code', status.code);
          if (status.code !== grpcStatus.OK) span.setStatus({ code: SpanStatusCode.ERROR, message: status.details });
          span.end();
          nextStatus(status);
        })
        .build();
      next(metadata, traced);
    })
    .build();
  return new InterceptingCall(nextCall(options), requester);
};

/**
 * The server half of the gRPC instrumentation: wraps the unary handlers of a
 * service so each traced call runs in a server span of the service's
 * component, continuing the caller's trace context from the metadata.
 */
export function traceServiceHandlers(definition: ServiceDefinition, implementation: { [method: string]: UntypedHandleCall | undefined }): { [method: string]: UntypedHandleCall | undefined } {
  const wrapped: { [method: string]: UntypedHandleCall | undefined } = { ...implementation };
  for (const [name, method] of Object.entries(definition)) {
    const handler = implementation[name];
    const { service, method: rpc } = splitPath(method.path);
    const component = COMPONENT_OF_SERVICE[service];
    if (!handler || !component || method.requestStream || method.responseStream || UNTRACED_METHODS.has(rpc)) continue;
    const unary = handler as (call: { metadata: Metadata }, callback: (error: unknown, value?: unknown, trailer?: unknown, flags?: unknown) => void) => void;
    wrapped[name] = ((call: { metadata: Metadata }, callback: (error: unknown, value?: unknown, trailer?: unknown, flags?: unknown) => void) => {
      if (!state) return unary(call, callback);
      const parent = propagation.extract(ROOT_CONTEXT, call.metadata, metadataGetter);
      const span = tracerOf(component).startSpan(`${service}/${rpc}`, { kind: SpanKind.SERVER, attributes: rpcAttributes(service, rpc) }, parent);
      const done = (error: unknown, value?: unknown, trailer?: unknown, flags?: unknown) => {
        const code = (error as { code?: number } | null)?.code ?? grpcStatus.OK;
        span.setAttribute('rpc.grpc.status_code', code);
        if (error) span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
        span.end();
        callback(error, value, trailer, flags);
      };
      context.with(trace.setSpan(withComponent(parent, component), span), () => unary(call, done));
    }) as UntypedHandleCall;
  }
  return wrapped;
}

/**
 * Runs the work of an RPC called in process (the embedded mesh calls its own
 * services directly) in a span of the serving component named like the RPC,
 * under the active context: the trace shows the same hop as a call over gRPC.
 * `path` is the method's path, e.g. `ComplianceService.validate.path`.
 */
export async function traceLocalCall<T>(path: string, work: () => Promise<T>): Promise<T> {
  if (!state) return work();
  const { service, method } = splitPath(path);
  const parent = context.active();
  const component = COMPONENT_OF_SERVICE[service] ?? componentOf(parent);
  const span = tracerOf(component).startSpan(`${service}/${method}`, { kind: SpanKind.INTERNAL, attributes: rpcAttributes(service, method) }, parent);
  try {
    return await context.with(trace.setSpan(withComponent(parent, component), span), work);
  } catch (err) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error)?.message ?? String(err) });
    throw err;
  } finally {
    span.end();
  }
}

/** Sets attributes on the span of the active context (such as the run id on SubmitRun's server span). */
export function annotateActiveSpan(attributes: Attributes): void {
  if (state) trace.getActiveSpan()?.setAttributes(attributes);
}

/** trace_id and span_id of the active span for a log line (nothing while tracing is off or outside a span). */
export function logTraceFields(): Record<string, string> {
  if (!state) return {};
  const span = trace.getActiveSpan()?.spanContext();
  return span ? { trace_id: span.traceId, span_id: span.spanId } : {};
}

/** What identifies a stage attempt on a span. */
export interface AttemptFields {
  runId: string;
  stageId: string;
  attempt: number;
  framework: string;
  pipelineName: string;
}

/** Span attributes of a stage attempt: `stagemesh.run_id`, `stagemesh.stage_id`, `stagemesh.attempt`, `stagemesh.framework`, `stagemesh.pipeline`. */
export function attemptAttributes(fields: AttemptFields): Attributes {
  return {
    'stagemesh.run_id': fields.runId,
    'stagemesh.stage_id': fields.stageId,
    'stagemesh.attempt': fields.attempt,
    'stagemesh.framework': fields.framework,
    'stagemesh.pipeline': fields.pipelineName,
  };
}

/**
 * Records a hop of a stage attempt (a task handed to a worker, an outcome
 * passed back) as a span under `traceparent`; returns the traceparent the
 * next hop continues from (unchanged while tracing is off).
 */
export function traceAttemptHop(component: TracedComponent, name: string, traceparent: string, fields: AttemptFields | undefined, nodeId = ''): string {
  if (!recording(traceparent)) return traceparent;
  const attributes = fields ? attemptAttributes(fields) : {};
  if (nodeId) attributes['stagemesh.node_id'] = nodeId;
  return traceHop(component, name, traceparent, attributes);
}

/** Starts the span of a stage attempt under `parent` (undefined while tracing is off or without a parent). */
export function startAttemptWork(component: TracedComponent, name: string, parent: string | undefined, fields: AttemptFields, nodeId = ''): TracedWork | undefined {
  if (!recording(parent)) return undefined;
  const attributes = attemptAttributes(fields);
  if (nodeId) attributes['stagemesh.node_id'] = nodeId;
  return startWork(component, name, parent, attributes);
}

/** Ends the span of a stage attempt with its outcome (`SUCCEEDED`, `FAILED`, …), failed unless it succeeded. */
export function endAttemptWork(work: TracedWork | undefined, outcome: string, error = ''): void {
  if (!work) return;
  endWork(work, { 'stagemesh.outcome': outcome }, outcome === 'SUCCEEDED' ? undefined : error || outcome);
}

/**
 * Starts the trace of a run in the current context (the SubmitRun call's
 * server span, which gets the run id): returns the traceparent every stage of
 * the run continues from ('' while tracing is off).
 */
export function beginRunTrace(runId: string, pipeline: string): string {
  if (!state) return '';
  annotateActiveSpan({ 'stagemesh.run_id': runId, 'stagemesh.pipeline': pipeline });
  return traceparentOf();
}
