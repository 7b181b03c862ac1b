/**
 * The executor SDK: serves sessions with handlers keyed by operation (docs/protocol.md,
 * "Writing an executor").
 *
 * - Before registering, it fixes its reading positions on `task.assignments` at the end of
 *   every partition, so no assignment for its sessions is missed. kafkajs has no consumer
 *   without a group, so each executor start (an incarnation) reads in a group of its own,
 *   `<prefix>-executor-<agent>-<uuid>`, whose offsets are set to the partitions' ends before it
 *   joins; it keeps the records whose `session_id` is one of its sessions and deletes the group
 *   when it stops. Assignments made while it was away are not replayed; they time out.
 * - It registers each session, heartbeats them, and releases them on stop.
 * - Every command goes through one ordered outbox to `task.commands`, keyed by `client_id`,
 *   to the partition the assignment's `ts-home` header names (session commands: the client's
 *   home partition by number), so a task's TaskStarted, ReportProgress and ReportResult arrive
 *   in order, at the partition the processor chose. A TaskStarted is held back up to 20 ms: a
 *   result of the same attempt that comes in that time carries it (`started`, or
 *   `items[].started` for a batch's item) and no TaskStarted is sent (./startFolding).
 * - A failed background loop (the sender, the consumer) stops the executor loudly: `wait()`
 *   rejects with the error.
 */
import { randomUUID } from "node:crypto";
import { Admin, Consumer, Kafka, Partitioners, Producer } from "kafkajs";
import { checkLayout, createKafka } from "./client";
import { decodeAs } from "./codec";
import { CommandInit, CommandName, defaultActor, encodeCommand, withActor } from "./commands";
import { resolveConfig, TaskstreamConfig, topicName } from "./config";
import { BrokerError, DecodeError, ExecutorError } from "./errors";
import { Assignment } from "./generated/schemas";
import { HOME_HEADER, homeFromHeader, homePartition, TYPE_HEADER } from "./partitioning";
import { Handler, Runner, RunnerMetrics } from "./runner";
import { StartHold } from "./startFolding";

const START_HOLD_MS = 20; // how long a TaskStarted may wait for its result (./startFolding)

export interface SessionSpec {
  sessionId: string;
  clientId: string;
  agentId: string;
  /** Units of work at once; also bounds the handler calls running for the session. */
  maxConcurrent?: number;
  capabilities?: string[];
}

export interface ExecutorOptions {
  handlers: Record<string, Handler>;
  sessions: SessionSpec[];
  defaultHandler?: Handler;
  /** When an assignment carries no timeout (default 300 000). */
  defaultTimeoutMs?: number;
  /** Default: a tenth of TASKSTREAM_SESSION_STALE_MS (5 min), at most 30 s. */
  heartbeatIntervalMs?: number;
  /** How long stop() lets running work finish before stopping it as "shutdown" (default 10 s). */
  drainTimeoutMs?: number;
}

interface Outgoing {
  name: CommandName;
  /** What `value` encodes (a result folding a start in is encoded again). */
  command: CommandInit;
  clientId: string;
  value: Buffer;
  partition: number | undefined;
}

export class Executor {
  readonly config: TaskstreamConfig;
  readonly sessions: readonly Required<SessionSpec>[];
  private readonly kafka: Kafka;
  private readonly runner: Runner;
  private readonly sessionIds: Set<string>;
  private readonly heartbeatMs: number;
  private readonly drainTimeoutMs: number;
  private readonly groupId: string;
  private producer: Producer | null = null;
  private admin: Admin | null = null;
  private consumer: Consumer | null = null;
  private partitions = 0;
  private heartbeat: NodeJS.Timeout | null = null;
  private outbox: Outgoing[] = [];
  private sending: Promise<void> = Promise.resolve();
  private readonly hold: StartHold<Outgoing>;
  private holdTimer: NodeJS.Timeout | null = null;
  private failure: Error | null = null;
  private started = false;
  private stopped = false;
  private readonly stoppedSignal: Promise<void>;
  private signalStopped!: () => void;
  /** Written into the `actor` of its session commands. */
  actor: string = defaultActor();
  /** Assignments skipped: undecodable, malformed, or of an unknown kind. */
  skipped = 0;

  constructor(config: Partial<TaskstreamConfig>, options: ExecutorOptions) {
    this.config = resolveConfig(config);
    if (options.sessions.length === 0) throw new ExecutorError("nothing to serve: give at least one session");
    this.sessions = options.sessions.map((s) => ({ maxConcurrent: 1, capabilities: [], ...s }));
    this.sessionIds = new Set(this.sessions.map((s) => s.sessionId));
    if (this.sessionIds.size !== this.sessions.length) throw new ExecutorError(`session ids must be unique, got ${this.sessions.map((s) => s.sessionId).join(", ")}`);
    this.kafka = createKafka(this.config);
    this.runner = new Runner({
      handlers: options.handlers,
      defaultHandler: options.defaultHandler,
      defaultTimeoutMs: options.defaultTimeoutMs,
      report: (name, command) => this.emit(name, command, this.homeOf.get(command.client_id + "\u0000" + command.fencing_token)),
    });
    for (const s of this.sessions) this.runner.addSession(s.sessionId, s.maxConcurrent);
    const stale = Number(process.env.TASKSTREAM_SESSION_STALE_MS ?? 300_000);
    this.heartbeatMs = options.heartbeatIntervalMs ?? Math.max(100, Math.min(30_000, Math.floor(stale / 10)));
    this.drainTimeoutMs = options.drainTimeoutMs ?? 10_000;
    this.groupId = `${this.config.topicPrefix}-executor-${this.sessions[0].agentId}-${randomUUID()}`;
    this.stoppedSignal = new Promise((resolve) => (this.signalStopped = resolve));
    // A result that folds a start in has the same size: a boolean is one byte either way.
    this.hold = new StartHold<Outgoing>(START_HOLD_MS, (o, result) => ({ ...o, command: result, value: encodeCommand("ReportResult", result, this.config.maxPayloadBytes) }));
  }

  /** Where replies about an assignment go: its ts-home, by client and fencing token. */
  private readonly homeOf = new Map<string, number>();

  metrics(): RunnerMetrics {
    return this.runner.metrics();
  }

  /** Connect, check the layout, position on task.assignments, register the sessions. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    try {
      await this.open();
    } catch (err) {
      this.stopped = true;
      await this.closeClients();
      throw err;
    }
  }

  /** Until stop() is called or a background loop fails (then it rejects with the error). */
  async wait(): Promise<void> {
    await this.stoppedSignal;
    if (this.failure) throw new ExecutorError(`executor stopped: ${this.failure.message}`, { cause: this.failure });
  }

  /**
   * Graceful shutdown: stop taking work, let running work finish within the drain bound (then
   * stop it, reported as failure "shutdown"), release the sessions, disconnect.
   */
  async stop(drainTimeoutMs: number = this.drainTimeoutMs): Promise<void> {
    if (this.stopped || !this.started) return;
    this.stopped = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    try {
      await this.runner.close(drainTimeoutMs);
      if (!this.failure) {
        for (const s of this.sessions) this.emit("ReleaseSession", { client_id: s.clientId, session_id: s.sessionId, reason: "shutdown" });
        await this.flush();
      }
    } finally {
      await this.closeClients();
      this.signalStopped();
    }
  }

  private async open(): Promise<void> {
    this.producer = this.kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
    this.admin = this.kafka.admin();
    try {
      await this.producer.connect();
      await this.admin.connect();
    } catch (err) {
      throw new BrokerError(`executor cannot reach Kafka at ${this.config.brokers.join(",")}: ${(err as Error).message}`, { cause: err });
    }
    this.partitions = await checkLayout(this.admin, this.config);
    const topic = topicName(this.config, "assignments");
    // Positions first: the end of every partition, fixed before any session is registered.
    const ends = await this.admin.fetchTopicOffsets(topic);
    await this.admin.setOffsets({ groupId: this.groupId, topic, partitions: ends.map((p) => ({ partition: p.partition, offset: p.high })) });
    const consumer = this.kafka.consumer({ groupId: this.groupId, allowAutoTopicCreation: false, retry: { retries: 8, restartOnFailure: async () => false } });
    this.consumer = consumer;
    consumer.on(consumer.events.CRASH, (event) => this.fail(event.payload.error as Error));
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: false });
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ message }) => this.onRecord(message.value, message.headers?.[HOME_HEADER]),
    });
    for (const s of this.sessions) {
      this.emit("RegisterSession", { client_id: s.clientId, session_id: s.sessionId, agent_id: s.agentId, max_concurrent: s.maxConcurrent, capabilities: s.capabilities });
    }
    await this.flush();
    this.heartbeat = setInterval(() => {
      for (const s of this.sessions) this.emit("SessionHeartbeat", { client_id: s.clientId, session_id: s.sessionId });
    }, this.heartbeatMs);
    this.heartbeat.unref();
  }

  private onRecord(value: Buffer | null, home: Buffer | string | (Buffer | string)[] | undefined): void {
    if (!value) return;
    let assignment: Assignment;
    try {
      assignment = decodeAs(value, "Assignment");
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      this.skipped += 1;
      console.warn(`executor: skipping an undecodable assignment record: ${err.message}`);
      return;
    }
    if (assignment.session_id == null || !this.sessionIds.has(assignment.session_id)) return;
    if (assignment.kind === "cancel") {
      this.runner.cancel(assignment);
      return;
    }
    if (assignment.kind !== "task" && assignment.kind !== "batch") {
      this.skipped += 1;
      return; // later versions may add kinds
    }
    if (this.stopped) return; // draining: it times out and is retried elsewhere
    const partition = homeFromHeader(Array.isArray(home) ? home[0] : home);
    const key = assignment.client_id + "\u0000" + assignment.fencing_token;
    if (partition !== undefined) this.homeOf.set(key, partition);
    try {
      void this.runner.run(assignment).finally(() => this.homeOf.delete(key));
    } catch (err) {
      this.homeOf.delete(key);
      this.skipped += 1;
      console.warn(`executor: skipping an assignment: ${(err as Error).message}`);
    }
  }

  private emit<N extends CommandName>(name: N, command: CommandInit<N>, partition?: number): void {
    if (this.failure) return;
    const clientId = (command as { client_id: string }).client_id;
    let sent: CommandInit = withActor(name, command, this.actor);
    let value: Buffer;
    try {
      value = encodeCommand(name, sent, this.config.maxPayloadBytes);
    } catch (err) {
      if (name !== "ReportResult") throw err;
      // An output too large for a record: report the failure instead of nothing.
      const result = command as CommandInit<"ReportResult">;
      sent = { ...result, success: false, output: "{}", items: (result.items ?? []).map((i) => ({ ...i, success: false, output: "{}", error: (err as Error).message })), error: (err as Error).message };
      value = encodeCommand("ReportResult", sent, this.config.maxPayloadBytes);
    }
    this.outbox.push({ name, command: sent, clientId, value, partition });
    this.kick();
  }

  /** A round of the sender after what runs now: the outbox, and the held starts that are due. */
  private kick(): void {
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    this.sending = this.sending.then(() => this.sendPending()).catch((err: unknown) => this.fail(err as Error));
  }

  private async sendPending(): Promise<void> {
    if ((this.outbox.length === 0 && this.hold.size === 0) || !this.producer || this.failure) return;
    const batch = this.hold.round(this.outbox.splice(0), performance.now());
    if (batch.length > 0) await this.sendAll(this.producer, batch);
    // Starts still held go out when due, unless a round before then sends or folds them.
    const waitMs = this.hold.waitMs(performance.now());
    if (waitMs !== null && !this.holdTimer && !this.failure) {
      this.holdTimer = setTimeout(() => {
        this.holdTimer = null;
        this.kick();
      }, waitMs);
    }
  }

  private async sendAll(producer: Producer, batch: Outgoing[]): Promise<void> {
    await producer.send({
      topic: topicName(this.config, "commands"),
      acks: -1,
      messages: batch.map((o) => ({
        key: o.clientId,
        value: o.value,
        partition: o.partition ?? homePartition(o.clientId, this.partitions),
        headers: { [TYPE_HEADER]: o.name },
      })),
    });
  }

  /** Until every command emitted so far is delivered (or the sender failed). */
  private async flush(): Promise<void> {
    await this.sending;
    // A held start is pending until it is sent or folded: its round comes within the hold.
    while (this.hold.size > 0 && this.producer && !this.failure) {
      await new Promise((resolve) => setTimeout(resolve, Math.max(1, this.hold.waitMs(performance.now()) ?? 0)));
      await this.sending;
    }
    if (this.failure) throw new ExecutorError(`the command sender stopped: ${this.failure.message}`, { cause: this.failure });
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    console.error(`executor failed: ${err.message}`);
    void this.stop(0);
  }

  private async closeClients(): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    const { consumer, producer, admin } = this;
    this.consumer = null;
    this.producer = null;
    await consumer?.disconnect().catch(() => undefined);
    await producer?.disconnect().catch(() => undefined);
    if (admin) {
      await admin.deleteGroups([this.groupId]).catch(() => undefined);
      await admin.disconnect().catch(() => undefined);
    }
    this.admin = null;
  }
}
