/**
 * Channel options of every stagemesh server and client: batches of outcomes
 * with their log tails can be large, and keepalive pings find dead peers
 * (a worker whose machine vanished) without waiting for TCP.
 */
export const GRPC_CHANNEL_OPTIONS = {
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
  'grpc.max_send_message_length': 64 * 1024 * 1024,
  'grpc.keepalive_time_ms': 20_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 10_000,
} as const;
