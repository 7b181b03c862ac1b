/**
 * The client SDK: put commands on `task.commands` and read outcomes back.
 *
 * Every command goes through one door (`send`): validated and size-checked before anything is
 * produced, keyed by `client_id` and sent by number to the client's home partition
 * (docs/partitioning.md), the partition that owns the client's tasks and sessions. Before its
 * first send the client checks the topic layout from the cluster's metadata (all topics, none
 * named) and raises `TopicLayoutError` saying what to run or set.
 *
 * Outcomes (`task.completed` / `task.failed`) are read in a consumer group; an outcome's offset
 * is committed only after the handler returned, so a crash redelivers the outcome in hand.
 * Every submitted task id ends with one outcome: a `TaskCompleted`, or a `TaskFailed` whose
 * `outcome` is failed, cancelled, rejected or refused.
 */
import { randomUUID } from "node:crypto";
import { Admin, Consumer, Kafka, logLevel, Partitioners, Producer } from "kafkajs";
import { decode } from "./codec";
import { CommandInit, CommandName, defaultActor, encodeCommand, withActor } from "./commands";
import { resolveConfig, TaskstreamConfig, topicName } from "./config";
import { BrokerError, ClientClosedError, InvalidCommandError, TopicLayoutError } from "./errors";
import { BatchJobItemInit, TaskCompleted, TaskFailed } from "./generated/schemas";
import { jsonText } from "./json";
import { homePartition, TYPE_HEADER } from "./partitioning";
import { layoutProblems } from "./topics";

/** Where a command landed. */
export interface Sent {
  topic: string;
  partition: number;
  offset: string;
}

export type Payload = Record<string, unknown>;

/** Every field of SubmitTask besides the client id and the operation. */
export interface SubmitOptions {
  /** Your idempotency key; a new uuid4 when left out. */
  taskId?: string;
  priority?: number | null;
  maxRetries?: number | null;
  timeoutMs?: number | null;
  scheduledForMs?: number | null;
  requiresReview?: boolean;
  dependsOn?: string[];
  capabilities?: string[];
}

export interface BatchJobOptions {
  batchJobId?: string;
  parallelism?: number;
  priority?: number | null;
  maxRetries?: number | null;
  timeoutMs?: number | null;
  capabilities?: string[];
}

export interface BatchJobItemSpec {
  taskId?: string | null;
  payload?: Payload;
}

export interface SessionOptions {
  maxConcurrent?: number;
  capabilities?: string[];
}

/** A task's ending: `outcome` reads `completed` on a TaskCompleted. */
export type Outcome = ({ outcome: "completed" } & TaskCompleted & { kind: "completed" }) | (TaskFailed & { kind: "failed" });

export interface OutcomeOptions {
  groupId: string;
  /** Where a new group starts: the earliest outcome (default) or only new ones. */
  fromBeginning?: boolean;
}

export type OutcomeHandler = (outcome: Outcome) => Promise<void> | void;

/** Quiet kafkajs unless asked: its INFO lines are about its own group protocol. */
export function createKafka(config: TaskstreamConfig): Kafka {
  const level = process.env.TASKSTREAM_KAFKAJS_LOG === "debug" ? logLevel.DEBUG : logLevel.ERROR;
  return new Kafka({ clientId: config.clientId, brokers: config.brokers, logLevel: level, retry: { retries: 5 } });
}

function payloadText(payload: Payload | undefined, what: string): string {
  if (payload === undefined) return "{}";
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    throw new InvalidCommandError(`${what} must be an object`);
  }
  try {
    return jsonText(payload);
  } catch (err) {
    throw new InvalidCommandError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

/** Read the partition count of every topic (no topic named) and check the layout. */
export async function checkLayout(admin: Admin, config: TaskstreamConfig): Promise<number> {
  let topics: { name: string; partitions: unknown[] }[];
  try {
    ({ topics } = await admin.fetchTopicMetadata());
  } catch (err) {
    throw new BrokerError(`cannot read the topic layout: ${(err as Error).message}`, { cause: err });
  }
  const existing = new Map(topics.map((t) => [t.name, t.partitions.length]));
  const problems = layoutProblems(config, existing);
  const commands = topicName(config, "commands");
  if (problems.length) throw new TopicLayoutError(`not sending to ${commands}: ${problems.join("; ")}`);
  return existing.get(commands)!;
}

export class TaskstreamClient {
  readonly config: TaskstreamConfig;
  readonly commandsTopic: string;
  private readonly kafka: Kafka;
  private producer: Producer | null = null;
  private admin: Admin | null = null;
  private partitions: number | null = null;
  /** The layout check in flight: sends that start together share it. */
  private layoutCheck: Promise<number> | null = null;
  private readonly streams = new Set<OutcomeStream>();
  /** Written into each command's `actor` (TASKSTREAM_ACTOR, else <user>@<host>). */
  actor: string = defaultActor();

  constructor(config: Partial<TaskstreamConfig> = {}) {
    this.config = resolveConfig(config);
    this.commandsTopic = topicName(this.config, "commands");
    this.kafka = createKafka(this.config);
  }

  async start(): Promise<this> {
    if (this.producer) return this;
    const producer = this.kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
    const admin = this.kafka.admin();
    try {
      await producer.connect();
      await admin.connect();
    } catch (err) {
      await Promise.allSettled([producer.disconnect(), admin.disconnect()]);
      throw new BrokerError(`client cannot reach Kafka at ${this.config.brokers.join(",")}: ${(err as Error).message}`, { cause: err });
    }
    this.producer = producer;
    this.admin = admin;
    return this;
  }

  /** Stop the outcome streams this client opened, then disconnect. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.streams].map((s) => s.stop()));
    this.streams.clear();
    const producer = this.producer;
    const admin = this.admin;
    this.producer = null;
    this.admin = null;
    this.partitions = null;
    await Promise.allSettled([producer?.disconnect(), admin?.disconnect()]);
  }

  /** One layout check for concurrent first sends (each would otherwise fetch the metadata). */
  private sharedLayoutCheck(): Promise<number> {
    if (!this.layoutCheck) {
      this.layoutCheck = this.checkLayout().finally(() => {
        this.layoutCheck = null;
      });
    }
    return this.layoutCheck;
  }

  /** Check the topic layout; returns the partition count of `task.commands`. */
  async checkLayout(): Promise<number> {
    if (!this.admin) throw new ClientClosedError("TaskstreamClient is not started; call start() first");
    this.partitions = await checkLayout(this.admin, this.config);
    return this.partitions;
  }

  /** Validate, size-check and produce any command to the client's home partition. */
  async send<N extends CommandName>(name: N, command: CommandInit<N>): Promise<Sent> {
    if (!this.producer) throw new ClientClosedError("TaskstreamClient is not started; call start() first");
    const value = encodeCommand(name, withActor(name, command, this.actor), this.config.maxPayloadBytes);
    const clientId = (command as { client_id: string }).client_id;
    const partitions = this.partitions ?? (await this.sharedLayoutCheck());
    try {
      const [meta] = await this.producer.send({
        topic: this.commandsTopic,
        acks: -1,
        messages: [{ key: clientId, value, partition: homePartition(clientId, partitions), headers: { [TYPE_HEADER]: name } }],
      });
      return { topic: meta.topicName, partition: meta.partition, offset: meta.baseOffset ?? meta.offset ?? "-1" };
    } catch (err) {
      throw new BrokerError(`could not send ${name}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Submit a task; returns its id. */
  async submit(clientId: string, operation: string, payload: Payload = {}, options: SubmitOptions = {}): Promise<string> {
    const taskId = options.taskId ?? randomUUID();
    await this.send("SubmitTask", {
      client_id: clientId,
      task_id: taskId,
      operation,
      payload: payloadText(payload, "payload"),
      priority: options.priority ?? null,
      max_retries: options.maxRetries ?? null,
      timeout_ms: options.timeoutMs ?? null,
      scheduled_for_ms: options.scheduledForMs ?? null,
      requires_review: options.requiresReview ?? false,
      depends_on: options.dependsOn ?? [],
      capabilities: options.capabilities ?? [],
    });
    return taskId;
  }

  /** Submit a batch job; its items become child tasks of `operation`. Returns the job's id. */
  async submitBatchJob(clientId: string, operation: string, items: BatchJobItemSpec[], options: BatchJobOptions = {}): Promise<string> {
    const batchJobId = options.batchJobId ?? randomUUID();
    const wireItems: BatchJobItemInit[] = items.map((item, i) => ({
      task_id: item.taskId ?? null,
      payload: payloadText(item.payload, `items[${i}].payload`),
    }));
    await this.send("SubmitBatchJob", {
      client_id: clientId,
      batch_job_id: batchJobId,
      operation,
      items: wireItems,
      parallelism: options.parallelism ?? 1,
      priority: options.priority ?? null,
      max_retries: options.maxRetries ?? null,
      timeout_ms: options.timeoutMs ?? null,
      capabilities: options.capabilities ?? [],
    });
    return batchJobId;
  }

  cancel(clientId: string, taskId: string, reason: string | null = null): Promise<Sent> {
    return this.send("CancelTask", { client_id: clientId, task_id: taskId, reason });
  }

  approve(clientId: string, taskId: string, reviewer: string | null = null): Promise<Sent> {
    return this.send("ApproveTask", { client_id: clientId, task_id: taskId, reviewer });
  }

  reject(clientId: string, taskId: string, reviewer: string | null = null, reason: string | null = null): Promise<Sent> {
    return this.send("RejectTask", { client_id: clientId, task_id: taskId, reviewer, reason });
  }

  expedite(clientId: string, taskId: string): Promise<Sent> {
    return this.send("ExpediteTask", { client_id: clientId, task_id: taskId });
  }

  registerSession(clientId: string, sessionId: string, agentId: string, options: SessionOptions = {}): Promise<Sent> {
    return this.send("RegisterSession", {
      client_id: clientId,
      session_id: sessionId,
      agent_id: agentId,
      max_concurrent: options.maxConcurrent ?? 1,
      capabilities: options.capabilities ?? [],
    });
  }

  releaseSession(clientId: string, sessionId: string, reason: string | null = null): Promise<Sent> {
    return this.send("ReleaseSession", { client_id: clientId, session_id: sessionId, reason });
  }

  heartbeat(clientId: string, sessionId: string): Promise<Sent> {
    return this.send("SessionHeartbeat", { client_id: clientId, session_id: sessionId });
  }

  /**
   * Call `handler` with every task's ending, read in consumer group `groupId`. An outcome is
   * committed once its handler returned; a handler that throws stops the stream (`done`
   * rejects) and its outcome is delivered again to the group's next reader.
   */
  async outcomes(options: OutcomeOptions, handler: OutcomeHandler): Promise<OutcomeStream> {
    if (!options.groupId) throw new InvalidCommandError("outcomes() needs a consumer group id");
    const stream = new OutcomeStream(this.kafka, this.config, options, handler);
    this.streams.add(stream);
    await stream.start();
    return stream;
  }
}

/** A running outcome consumer; `stop()` it, or let the client's `close()` do it. */
export class OutcomeStream {
  /** Resolves when the group has its partitions, so outcomes from now on are seen. */
  readonly ready: Promise<void>;
  /** Resolves on stop(), rejects when a handler threw or the consumer crashed. */
  readonly done: Promise<void>;
  skipped = 0;
  private readonly consumer: Consumer;
  private failure: Error | null = null;
  private markReady!: () => void;
  private settle!: (err?: Error) => void;
  private stopping: Promise<void> | null = null;

  constructor(
    kafka: Kafka,
    private readonly config: TaskstreamConfig,
    private readonly options: OutcomeOptions,
    private readonly handler: OutcomeHandler,
  ) {
    this.consumer = kafka.consumer({ groupId: options.groupId, allowAutoTopicCreation: false, retry: { retries: 8, restartOnFailure: async () => false } });
    this.ready = new Promise((resolve) => (this.markReady = resolve));
    this.done = new Promise((resolve, reject) => {
      this.settle = (err?: Error) => (err ? reject(err) : resolve());
    });
    this.done.catch(() => undefined); // observed through `done` by whoever awaits it
  }

  async start(): Promise<void> {
    const { consumer } = this;
    consumer.on(consumer.events.GROUP_JOIN, () => this.markReady());
    consumer.on(consumer.events.CRASH, (event) => {
      const err = this.failure ?? (event.payload.error as Error);
      this.settle(new BrokerError(`outcomes consumer stopped: ${err.message}`, { cause: err }));
    });
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [topicName(this.config, "completed"), topicName(this.config, "failed")], fromBeginning: this.options.fromBeginning ?? true });
    } catch (err) {
      await consumer.disconnect().catch(() => undefined);
      throw new BrokerError(`outcomes consumer cannot reach Kafka: ${(err as Error).message}`, { cause: err });
    }
    await consumer.run({
      autoCommit: true,
      eachMessage: async ({ topic, partition, message }) => {
        if (this.failure) throw this.failure;
        let outcome: Outcome | null = null;
        try {
          const decoded = message.value ? decode(message.value) : null;
          if (decoded?.name === "TaskCompleted") outcome = { ...(decoded.value as TaskCompleted), outcome: "completed", kind: "completed" };
          else if (decoded?.name === "TaskFailed") outcome = { ...(decoded.value as TaskFailed), kind: "failed" };
        } catch (err) {
          console.warn(`outcomes: skipping undecodable record ${topic}[${partition}]@${message.offset}: ${(err as Error).message}`);
        }
        if (!outcome) {
          this.skipped += 1;
          return;
        }
        try {
          await this.handler(outcome);
        } catch (err) {
          this.failure = err instanceof Error ? err : new Error(String(err));
          setImmediate(() => void this.stop(this.failure!));
          throw this.failure;
        }
      },
    });
  }

  async stop(failure?: Error): Promise<void> {
    this.stopping ??= this.consumer.disconnect().catch(() => undefined).then(() => this.settle(failure));
    return this.stopping;
  }
}
