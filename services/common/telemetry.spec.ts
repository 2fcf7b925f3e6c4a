import assert from 'node:assert/strict';
import { lifecycleEvent } from './event-publisher.js';
import { beginRunTrace, DEFAULT_TRACES_PER_SECOND, handleTracedEvent, serviceNameOf, telemetryRequested, traceAppend, traceHop, TracedComponent, traceparentOf, tracesPerSecond, tracingEnabled, withTraceparent } from './telemetry.js';

describe('telemetry', () => {
  describe('telemetryRequested()', () => {
    it('is off unless an OTLP endpoint or an exporter is named', () => {
      assert.equal(telemetryRequested({}), false);
      assert.equal(telemetryRequested({ OTEL_SERVICE_NAME: 'x' }), false);
      assert.equal(telemetryRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }), true);
      assert.equal(telemetryRequested({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:4318/v1/traces' }), true);
      assert.equal(telemetryRequested({ OTEL_TRACES_EXPORTER: 'console' }), true);
    });

    it('honours OTEL_SDK_DISABLED and OTEL_TRACES_EXPORTER=none over an endpoint', () => {
      assert.equal(telemetryRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318', OTEL_SDK_DISABLED: 'true' }), false);
      assert.equal(telemetryRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318', OTEL_TRACES_EXPORTER: 'none' }), false);
    });
  });

  describe('serviceNameOf()', () => {
    it('prefixes each component with OTEL_SERVICE_NAME, or stagemesh', () => {
      assert.equal(serviceNameOf(TracedComponent.EVENT_BUS, {}), 'stagemesh-event-bus');
      assert.equal(serviceNameOf(TracedComponent.WORKER, { OTEL_SERVICE_NAME: 'ci-mesh' }), 'ci-mesh-worker');
    });
  });

  describe('tracesPerSecond()', () => {
    it('reads STAGEMESH_TRACES_PER_SECOND, with a default', () => {
      assert.equal(tracesPerSecond({}), DEFAULT_TRACES_PER_SECOND);
      assert.equal(tracesPerSecond({ STAGEMESH_TRACES_PER_SECOND: ' 2.5 ' }), 2.5);
    });

    it('names the variable and the value it refuses', () => {
      for (const raw of ['0', '-3', 'ten', 'Infinity']) assert.throws(() => tracesPerSecond({ STAGEMESH_TRACES_PER_SECOND: raw }), new RegExp(`STAGEMESH_TRACES_PER_SECOND: expected a positive number, got "${raw}"`));
    });
  });

  describe('while tracing is off', () => {
    it('leaves trace context, events and handlers as they are', () => {
      assert.equal(tracingEnabled(), false);
      const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
      assert.equal(traceHop(TracedComponent.COORDINATOR, 'dispatch stage', traceparent, {}), traceparent);
      assert.equal(traceparentOf(), '');
      assert.equal(beginRunTrace('r1', 'p'), '');
      const event = withTraceparent(lifecycleEvent('stage.ready', 'stagemesh/test', 'run/r1', { run_id: 'r1' }), traceparent);
      assert.deepEqual(traceAppend(event).headers, { traceparent });
      assert.equal(handleTracedEvent(TracedComponent.METRICS, 'record', event, () => 42), 42);
      assert.deepEqual(withTraceparent(lifecycleEvent('run.finished', 'stagemesh/test', 'run/r1', {}), '').headers, {});
    });
  });
});
