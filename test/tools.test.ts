// Integration tests for stagemesh's external tools (built by `make tools`):
// each suite starts the real binary on free loopback ports, talks to it
// over its public API with plain fetch, and stops it again.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';

import { startConsul, type ConsulAgent } from './support/consul.js';
import { startJaeger, type JaegerInstance } from './support/jaeger.js';
import { requireTool, sleep } from './support/tools.js';

describe('tools - consul', function () {
  this.timeout(60_000);
  let consul: ConsulAgent | undefined;

  before(async function () {
    requireTool('consul', this);
    consul = await startConsul();
  });

  after(async function () {
    await consul?.stop();
  });

  it('registers a service over the HTTP API and reads it back through /v1/health/service/<name>', async function () {
    assert.ok(consul);
    const name = `stagemesh-stage-${randomBytes(4).toString('hex')}`;
    const registration = {
      ID: `${name}-1`,
      Name: name,
      Address: '127.0.0.1',
      Port: 50051,
      Tags: ['stagemesh', 'grpc'],
      Meta: { framework: 'node' },
    };

    const put = await fetch(`${consul.httpAddr}/v1/agent/service/register`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(registration),
    });
    assert.equal(put.status, 200, `register failed: ${await put.text()}`);

    const res = await fetch(`${consul.httpAddr}/v1/health/service/${encodeURIComponent(name)}`);
    assert.equal(res.status, 200);
    const entries = (await res.json()) as Array<{
      Node: { Node: string };
      Service: { ID: string; Service: string; Address: string; Port: number; Tags: string[]; Meta: Record<string, string> };
    }>;
    assert.equal(entries.length, 1, `expected one instance of ${name}, got ${JSON.stringify(entries)}`);
    const [entry] = entries;
    assert.ok(entry);
    assert.equal(entry.Service.ID, registration.ID);
    assert.equal(entry.Service.Service, name);
    assert.equal(entry.Service.Address, '127.0.0.1');
    assert.equal(entry.Service.Port, 50051);
    assert.deepEqual([...entry.Service.Tags].sort(), ['grpc', 'stagemesh']);
    assert.equal(entry.Service.Meta.framework, 'node');
  });
});

describe('tools - jaeger', function () {
  this.timeout(60_000);
  let jaeger: JaegerInstance | undefined;

  before(async function () {
    requireTool('jaeger', this);
    jaeger = await startJaeger();
  });

  after(async function () {
    await jaeger?.stop();
  });

  it('stores a span sent over OTLP/HTTP and serves it from /api/traces/<id>', async function () {
    assert.ok(jaeger);
    const traceId = randomBytes(16).toString('hex');
    const spanId = randomBytes(8).toString('hex');
    const serviceName = 'stagemesh-tools-test';
    const spanName = 'stage.process';
    const endNs = BigInt(Date.now()) * 1_000_000n;
    const startNs = endNs - 25_000_000n; // 25 ms span

    // OTLP/JSON: ids are hex strings, 64-bit integers are decimal strings.
    const body = {
      resourceSpans: [
        {
          resource: {
            attributes: [{ key: 'service.name', value: { stringValue: serviceName } }],
          },
          scopeSpans: [
            {
              scope: { name: 'stagemesh.test' },
              spans: [
                {
                  traceId,
                  spanId,
                  name: spanName,
                  kind: 2, // SPAN_KIND_SERVER
                  startTimeUnixNano: startNs.toString(),
                  endTimeUnixNano: endNs.toString(),
                  attributes: [{ key: 'stagemesh.stage', value: { stringValue: 'tools-test' } }],
                  status: { code: 1 }, // STATUS_CODE_OK
                },
              ],
            },
          ],
        },
      ],
    };

    const post = await fetch(`${jaeger.otlpHttp}/v1/traces`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    assert.equal(post.status, 200, `OTLP export failed: ${await post.text()}`);

    type JaegerTrace = {
      traceID: string;
      spans: Array<{ traceID: string; spanID: string; operationName: string; processID: string }>;
      processes: Record<string, { serviceName: string }>;
    };
    let trace: JaegerTrace | undefined;
    const deadline = Date.now() + 20_000;
    let last = '';
    while (trace === undefined) {
      const res = await fetch(`${jaeger.queryUrl}/api/traces/${traceId}`);
      const text = await res.text();
      if (res.status === 200) {
        const parsed = JSON.parse(text) as { data: JaegerTrace[] | null };
        trace = parsed.data?.[0];
      }
      last = `HTTP ${String(res.status)}: ${text.slice(0, 300)}`;
      if (trace === undefined) {
        assert.ok(Date.now() < deadline, `trace ${traceId} not served within 20 s (last: ${last})\n${jaeger.output()}`);
        await sleep(250);
      }
    }

    assert.equal(trace.traceID, traceId);
    assert.equal(trace.spans.length, 1);
    const [span] = trace.spans;
    assert.ok(span);
    assert.equal(span.spanID, spanId);
    assert.equal(span.operationName, spanName);
    assert.equal(trace.processes[span.processID]?.serviceName, serviceName);
  });
});
