import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { pathToFileURL } from 'node:url';
import { connect } from 'nats';
import { lifecycleEvent } from '../services/common/event-publisher.js';
import { Event } from '../services/common/proto.js';
import type { EventLog } from '../services/event-bus/event-log.js';
import { JetStreamEventLog } from '../services/event-bus/jetstream-event-log.js';
import { MemoryEventLog } from '../services/event-bus/memory-event-log.js';

/** Publish→deliver latency percentiles, in milliseconds. */
export interface LatencyFigures {
  p50: number;
  p99: number;
}

/** The figures `make bench` reports as `event_latency_ms` (1,000/s) and `event_latency_ms_10k` (10,000/s). */
export interface EventLatencyResult {
  in_process: LatencyFigures;
  jetstream: LatencyFigures;
  nats_raw: LatencyFigures;
}

/** Options of measureEventLatency. */
export interface EventLatencyOptions {
  /** Events published per second. @default 1000 */
  ratePerSecond?: number;
  /** Subscribers, each receiving every event. @default 10 */
  subscribers?: number;
  /** Measured publishing time per backend (after the warm-up). @default 3000 */
  durationMs?: number;
  /** Publishing time discarded before measuring. @default 500 */
  warmupMs?: number;
  /** NATS server (loopback). @default "nats://127.0.0.1:4222" */
  natsUrl?: string;
}

/** Appends in flight at once (JetStream acks are awaited concurrently); past this the publisher waits. */
const MAX_IN_FLIGHT = 2_000;

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return Number(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!.toFixed(3));
}

function figures(samples: number[]): LatencyFigures {
  const sorted = Float64Array.from(samples).sort();
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
}

/**
 * Publishes at `ratePerSecond` for warm-up + duration, calling `publish` with
 * batches of events stamped with their publish time (performance.now()).
 * Bounded: stops at the deadline and never has more than MAX_IN_FLIGHT events unacknowledged.
 */
async function drive(rate: number, totalMs: number, publish: (events: Event[]) => Promise<unknown>): Promise<number> {
  const started = performance.now();
  const maxEvents = Math.ceil((rate * totalMs) / 1000);
  let sent = 0;
  let inFlight = 0;
  const pending = new Set<Promise<unknown>>();
  while (sent < maxEvents && performance.now() - started < totalMs + 1_000) {
    const due = Math.min(maxEvents, Math.floor(((performance.now() - started) * rate) / 1000));
    if (due > sent && inFlight < MAX_IN_FLIGHT) {
      const now = performance.now();
      const batch = Array.from({ length: due - sent }, (_, i) => lifecycleEvent('bench.tick', 'stagemesh/bench', 'bench', { run_id: 'bench' }, { t: now, n: sent + i }, `k${(sent + i) % 16}`));
      sent = due;
      inFlight += batch.length;
      const p = publish(batch).finally(() => {
        inFlight -= batch.length;
        pending.delete(p);
      });
      pending.add(p);
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.allSettled(pending);
  return sent;
}

/** Receives `expected` events on every subscriber (or gives up after a grace period) and collects latencies past the warm-up. */
async function measureLog(log: EventLog, options: Required<EventLatencyOptions>): Promise<LatencyFigures> {
  const controller = new AbortController();
  // Every subscriber listens on this one signal.
  setMaxListeners(options.subscribers * 2 + 10, controller.signal);
  const samples: number[] = [];
  const warmupEnds = { at: Number.POSITIVE_INFINITY };
  const subscriptions = await Promise.all(
    Array.from({ length: options.subscribers }, () => log.subscribe({ subjects: ['bench.*'], filter: {}, start: { kind: 'new' }, maxPending: 1_000_000 }, controller.signal)),
  );
  const readers = subscriptions.map(async (events) => {
    for await (const { event } of events) {
      const now = performance.now();
      const t = Number((event.data as { t: number }).t);
      if (t >= warmupEnds.at) samples.push(now - t);
    }
  });
  const start = performance.now();
  warmupEnds.at = start + options.warmupMs;
  const sent = await drive(options.ratePerSecond, options.warmupMs + options.durationMs, (events) => log.append(events));
  const expected = Math.round(((sent * options.durationMs) / (options.warmupMs + options.durationMs)) * options.subscribers * 0.95);
  const deadline = performance.now() + 5_000;
  while (samples.length < expected && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  controller.abort();
  await Promise.allSettled(readers);
  return figures(samples);
}

/** Raw NATS core publish/subscribe with the same payloads, the reference the JetStream backend is held to. */
async function measureRawNats(options: Required<EventLatencyOptions>): Promise<LatencyFigures> {
  const subject = `smbench.${randomUUID().slice(0, 8)}.tick`;
  const pub = await connect({ servers: options.natsUrl });
  const sub = await connect({ servers: options.natsUrl });
  const samples: number[] = [];
  let warmupEndsAt = Number.POSITIVE_INFINITY;
  try {
    for (let i = 0; i < options.subscribers; i++) {
      sub.subscribe(subject, {
        callback: (_err, m) => {
          const now = performance.now();
          const t = Number((Event.decode(m.data).data as { t: number }).t);
          if (t >= warmupEndsAt) samples.push(now - t);
        },
      });
    }
    await sub.flush();
    warmupEndsAt = performance.now() + options.warmupMs;
    await drive(options.ratePerSecond, options.warmupMs + options.durationMs, async (events) => {
      for (const e of events) pub.publish(subject, Event.encode(e).finish());
    });
    await pub.flush();
    await new Promise((r) => setTimeout(r, 200));
    return figures(samples);
  } finally {
    await Promise.allSettled([pub.close(), sub.close()]);
  }
}

/**
 * Measures publish→deliver latency at one rate with N subscribers, for the
 * in-process log, the JetStream backend (file storage, its own stream,
 * deleted afterwards) and raw NATS, in the same run, on loopback.
 * Latency is taken at the EventLog interface (no gRPC hop), from the
 * publisher's clock to the subscriber's, both in this process.
 */
export async function measureEventLatency(options: EventLatencyOptions = {}): Promise<EventLatencyResult> {
  const resolved: Required<EventLatencyOptions> = { ratePerSecond: 1_000, subscribers: 10, durationMs: 3_000, warmupMs: 500, natsUrl: 'nats://127.0.0.1:4222', ...options };
  const memory = new MemoryEventLog();
  const in_process = await measureLog(memory, resolved).finally(() => memory.close());
  const id = randomUUID().replace(/-/g, '').slice(0, 12);
  const jetstreamLog = await JetStreamEventLog.open({ servers: resolved.natsUrl, stream: `SMBENCH_${id}`, subjectPrefix: `smbench.${id}` });
  let jetstream: LatencyFigures;
  try {
    jetstream = await measureLog(jetstreamLog, resolved);
  } finally {
    await jetstreamLog.destroy().catch(() => undefined);
    await jetstreamLog.close();
  }
  const nats_raw = await measureRawNats(resolved);
  return { in_process, jetstream, nats_raw };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const event_latency_ms = await measureEventLatency({ ratePerSecond: 1_000 });
  const event_latency_ms_10k = await measureEventLatency({ ratePerSecond: 10_000 });
  process.stdout.write(`${JSON.stringify({ event_latency_ms, event_latency_ms_10k }, null, 2)}\n`);
}
