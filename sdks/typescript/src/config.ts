/**
 * Connection and topic settings, read from the same environment variables as the Python
 * processor (`KAFKA_BOOTSTRAP_SERVERS`, `TASKSTREAM_TOPIC_PREFIX`, ...), defaults in code.
 */
export interface TaskstreamConfig {
  /** Kafka bootstrap servers, e.g. ["127.0.0.1:9092"]. */
  brokers: string[];
  /** Topic prefix (`TASKSTREAM_TOPIC_PREFIX`, default `task`). */
  topicPrefix: string;
  /** Largest encoded command (`TASKSTREAM_MAX_PAYLOAD_BYTES`, default 1 MiB). */
  maxPayloadBytes: number;
  /** Kafka client id. */
  clientId: string;
}

export const RETRY_TIERS_S = [1, 2, 4, 8, 16, 32] as const;

export type LogicalTopic =
  | "commands" | "events" | "assignments" | "pool" | "completed" | "failed" | "dlq"
  | `retry.${(typeof RETRY_TIERS_S)[number]}s`;

export const LOGICAL_TOPICS: readonly LogicalTopic[] = [
  "commands", "events", "assignments", "pool", "completed", "failed", "dlq",
  ...RETRY_TIERS_S.map((s) => `retry.${s}s` as LogicalTopic),
];

export function topicName(config: Pick<TaskstreamConfig, "topicPrefix">, logical: LogicalTopic): string {
  return `${config.topicPrefix}.${logical}`;
}

/** Fill a partial config from the environment, then defaults. */
export function resolveConfig(partial: Partial<TaskstreamConfig> = {}, env: NodeJS.ProcessEnv = process.env): TaskstreamConfig {
  const brokers = partial.brokers ?? (env.KAFKA_BOOTSTRAP_SERVERS ?? "127.0.0.1:9092").split(",").map((s) => s.trim()).filter(Boolean);
  const maxBytes = partial.maxPayloadBytes ?? Number(env.TASKSTREAM_MAX_PAYLOAD_BYTES ?? 1_048_576);
  if (!Number.isInteger(maxBytes) || maxBytes < 1) throw new RangeError(`TASKSTREAM_MAX_PAYLOAD_BYTES must be a positive integer, got ${maxBytes}`);
  return {
    brokers,
    topicPrefix: partial.topicPrefix ?? env.TASKSTREAM_TOPIC_PREFIX ?? "task",
    maxPayloadBytes: maxBytes,
    clientId: partial.clientId ?? "taskstream-ts",
  };
}
