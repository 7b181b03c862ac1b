// End to end against a real broker and the Python processor (and its delay agent), run when
// KAFKA_BOOTSTRAP_SERVERS is set; TASKSTREAM_TOPIC_PREFIX names the processor's topics.
// tests/integration/test_sdk_typescript.py starts both and runs `npm test` with them.
// The TypeScript client submits, the TypeScript executor runs the work, outcomes arrive; a task
// submitted by the Python SDK runs on the TypeScript executor too.
import { strict as assert } from "node:assert";
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { Consumer, Kafka, logLevel } from "kafkajs";
import { decode, Executor, Outcome, OutcomeStream, TaskAbort, TaskContext, TaskstreamClient, TopicLayoutError } from "../src/index";

const BROKERS = process.env.KAFKA_BOOTSTRAP_SERVERS;
const PREFIX = process.env.TASKSTREAM_TOPIC_PREFIX ?? "task";
const REPO = path.resolve(__dirname, "..", "..", "..", "..");
const PYTHON = process.env.TASKSTREAM_PYTHON ?? path.join(REPO, ".venv", "bin", "python");
const GUARD_MS = 60_000; // only against a hang: nothing asserts how long anything took

const run = Math.random().toString(36).slice(2, 8);
const CLIENT = `ts-client-${run}`;
const SESSION = `ts-session-${run}`;

function waitFor<T>(what: string, check: () => T | undefined, guardMs = GUARD_MS): Promise<T> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = () => {
      const value = check();
      if (value !== undefined) return resolve(value);
      if (Date.now() - started > guardMs) return reject(new Error(`gave up waiting for ${what}`));
      setTimeout(poll, 25);
    };
    poll();
  });
}

const output = (o: Outcome): string => (o.kind === "completed" ? o.output : "{}");

/** Every record of task.events (or another topic), decoded, read by a consumer of its own from the beginning. */
class EventLog {
  readonly events: { name: string; value: Record<string, unknown> }[] = [];
  private readonly kafka = new Kafka({ clientId: "ts-e2e-events", brokers: BROKERS!.split(","), logLevel: logLevel.NOTHING });
  private readonly consumer: Consumer;
  constructor(private readonly topic: "events" | "commands" = "events") {
    this.consumer = this.kafka.consumer({ groupId: `ts-e2e-${topic}-${randomUUID()}` });
  }
  async start(): Promise<void> {
    await this.consumer.connect();
    await this.consumer.subscribe({ topic: `${PREFIX}.${this.topic}`, fromBeginning: true });
    await this.consumer.run({
      eachMessage: async ({ message }) => {
        if (!message.value) return;
        let decoded;
        try {
          decoded = decode(message.value);
        } catch {
          this.events.push({ name: "undecodable", value: {} });
          return;
        }
        this.events.push({ name: decoded.name, value: decoded.value as unknown as Record<string, unknown> });
      },
    });
  }
  find(name: string, taskId?: string, field = "task_id"): Record<string, unknown> | undefined {
    return this.events.find((e) => e.name === name && (taskId === undefined || e.value[field] === taskId))?.value;
  }
  async stop(): Promise<void> {
    await this.consumer.disconnect();
  }
}

describe("end to end with the Python processor", { skip: BROKERS ? false : "KAFKA_BOOTSTRAP_SERVERS is not set" }, () => {
  const outcomes = new Map<string, Outcome>();
  const contexts = new Map<string, TaskContext>();
  const aborted = new Map<string, string>();
  let client: TaskstreamClient;
  let executor: Executor;
  let stream: OutcomeStream;
  let log: EventLog;
  let commands: EventLog;

  const outcome = (taskId: string) => waitFor(`the outcome of ${taskId}`, () => outcomes.get(taskId));
  const onAbort = (ctx: TaskContext) =>
    new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => {
      aborted.set(ctx.taskId, (ctx.signal.reason as TaskAbort).reason);
      resolve();
    }));

  before(async () => {
    client = await new TaskstreamClient({ brokers: BROKERS!.split(","), topicPrefix: PREFIX }).start();
    log = new EventLog();
    await log.start();
    commands = new EventLog("commands");
    await commands.start();
    stream = await client.outcomes({ groupId: `ts-e2e-outcomes-${run}` }, (o) => {
      outcomes.set(o.task_id, o);
    });
    executor = new Executor({ brokers: BROKERS!.split(","), topicPrefix: PREFIX }, {
      sessions: [{ sessionId: SESSION, clientId: CLIENT, agentId: `ts-agent-${run}`, maxConcurrent: 4, capabilities: ["browser"] }],
      heartbeatIntervalMs: 1000,
      handlers: {
        conversation_send: async (ctx) => {
          contexts.set(ctx.taskId, ctx);
          ctx.reportProgress(0.5, "half way");
          return { sent_to: ctx.payload.to, by: "typescript" };
        },
        contact_create: async (ctx) => ({ contact_id: `ct_${ctx.payload.name as string}` }),
        report_generate: async (ctx) => {
          contexts.set(ctx.taskId, ctx);
          await onAbort(ctx);
          throw ctx.signal.reason;
        },
        data_export: async (ctx) => {
          await onAbort(ctx);
          return { too: "late" };
        },
      },
    });
    await executor.start();
  });

  after(async () => {
    await executor?.stop();
    await stream?.stop();
    await client?.close();
    await log?.stop();
    await commands?.stop();
  });

  test("the layout check refuses a prefix without topics, saying what to run", async () => {
    const other = await new TaskstreamClient({ brokers: BROKERS!.split(","), topicPrefix: `missing-${run}` }).start();
    try {
      await assert.rejects(other.submit(CLIENT, "conversation_send"), (err: unknown) => err instanceof TopicLayoutError && /taskstream topics create/.test(err.message));
    } finally {
      await other.close();
    }
    assert.equal(await client.checkLayout() > 0, true);
  });

  test("a task with every SubmitTask field runs on the TypeScript executor and completes", async () => {
    const first = await client.submit(CLIENT, "conversation_send", { to: "+15550100" }, {
      priority: 2, maxRetries: 1, timeoutMs: 30_000, capabilities: ["browser"],
    });
    const second = await client.submit(CLIENT, "conversation_send", { to: "+15550101" }, {
      taskId: `dep-${run}`, dependsOn: [first], scheduledForMs: Date.now() + 500, requiresReview: false,
    });
    const done = await outcome(first);
    assert.equal(done.kind, "completed");
    assert.deepEqual(JSON.parse(output(done)), { by: "typescript", sent_to: "+15550100" });
    assert.equal(done.session_id, SESSION);
    const ctx = contexts.get(first)!;
    assert.equal(ctx.clientId, CLIENT);
    assert.ok(ctx.fencingToken > 0 && ctx.deadlineAtMs > 0);
    const accepted = log.find("TaskAccepted", first)!;
    assert.equal(accepted.priority, 2);
    assert.equal(accepted.max_retries, 1);
    assert.equal(accepted.timeout_ms, 30_000);
    assert.deepEqual(accepted.capabilities, ["browser"]);
    assert.equal(typeof accepted.actor, "string"); // TASKSTREAM_ACTOR, else <user>@<host>
    const progressed = await waitFor("task.progressed", () => log.find("TaskProgressed", first));
    assert.equal(progressed.progress, 0.5);
    // The dependent, scheduled task was accepted as such, waited for its start, then ran.
    assert.equal((await outcome(second)).kind, "completed");
    const dependent = log.find("TaskAccepted", second)!;
    assert.deepEqual(dependent.depends_on, [first]);
    assert.equal(typeof dependent.scheduled_for_ms, "number");
    assert.equal(dependent.requires_review, false);
    assert.ok(log.find("TaskScheduled", second));
  });

  test("a batch job's children run (batched) and each gets its outcome", async () => {
    const ids = ["a", "b", "c"].map((n) => `bj-${n}-${run}`);
    const jobId = await client.submitBatchJob(CLIENT, "contact_create", ids.map((id, i) => ({ taskId: id, payload: { name: `n${i}` } })), { parallelism: 3 });
    const done = await Promise.all(ids.map(outcome));
    assert.deepEqual(done.map((o) => [o.kind, JSON.parse(output(o))]), [0, 1, 2].map((i) => ["completed", { contact_id: `ct_n${i}` }]));
    const completed = await waitFor("batch_job.completed", () => log.find("BatchJobCompleted", jobId, "batch_job_id"));
    assert.equal(completed.succeeded, 3);
  });

  test("review: an approved task runs, a rejected one ends as rejected; expedite raises one", async () => {
    const approved = await client.submit(CLIENT, "conversation_send", { to: "a" }, { requiresReview: true });
    const rejected = await client.submit(CLIENT, "conversation_send", { to: "r" }, { requiresReview: true });
    await waitFor("pending review", () => log.find("TaskPendingReview", rejected));
    await client.expedite(CLIENT, approved);
    await waitFor("task.expedited", () => log.find("TaskExpedited", approved));
    await client.approve(CLIENT, approved, "ts-reviewer");
    await client.reject(CLIENT, rejected, "ts-reviewer", "not today");
    assert.equal((await outcome(approved)).kind, "completed");
    const no = await outcome(rejected);
    assert.equal(no.kind === "failed" && no.outcome, "rejected");
    assert.equal(no.kind === "failed" && no.reason, "not today");
    assert.equal(log.find("TaskApproved", approved)?.reviewer, "ts-reviewer");
  });

  test("a cancel reaches the running handler through its AbortSignal", async () => {
    const taskId = await client.submit(CLIENT, "report_generate", { report: "q3" });
    await waitFor("the handler to start", () => contexts.get(taskId));
    await client.cancel(CLIENT, taskId, "changed my mind");
    const ended = await outcome(taskId);
    assert.equal(ended.kind === "failed" && ended.outcome, "cancelled");
    assert.equal(await waitFor("the abort", () => aborted.get(taskId)), "cancelled");
  });

  test("work past its timeout is stopped and fails", async () => {
    const taskId = await client.submit(CLIENT, "data_export", {}, { timeoutMs: 1500, maxRetries: 0 });
    const ended = await outcome(taskId);
    assert.equal(ended.kind === "failed" && ended.outcome, "failed");
    assert.equal(await waitFor("the abort", () => aborted.get(taskId)), "timeout");
  });

  test("an unknown operation is refused with an outcome", async () => {
    const taskId = await client.submit(CLIENT, "no_such_operation");
    const ended = await outcome(taskId);
    assert.equal(ended.kind === "failed" && ended.outcome, "refused");
    assert.equal(ended.attempt, 0);
  });

  test("a task submitted by the Python SDK runs on the TypeScript executor", async () => {
    assert.ok(fs.existsSync(PYTHON), `no Python at ${PYTHON}: set TASKSTREAM_PYTHON`);
    const taskId = `py-${run}`;
    const code = [
      "import asyncio, sys",
      "from streams.client import TaskstreamClient",
      "from streams.settings import Settings",
      "async def main():",
      "    async with TaskstreamClient(Settings()) as c:",
      "        await c.submit(sys.argv[1], 'conversation_send', {'to': 'py'}, task_id=sys.argv[2])",
      "asyncio.run(main())",
    ].join("\n");
    await promisify(execFile)(PYTHON, ["-c", code, CLIENT, taskId], {
      cwd: REPO,
      env: { ...process.env, KAFKA_BOOTSTRAP_SERVERS: BROKERS, TASKSTREAM_TOPIC_PREFIX: PREFIX },
    });
    const done = await outcome(taskId);
    assert.equal(done.kind, "completed");
    assert.deepEqual(JSON.parse(output(done)), { by: "typescript", sent_to: "py" });
  });

  test("every task that ran started once: a TaskStarted or `started` on its result, never both, never neither", async () => {
    const attempt = (taskId: unknown, token: unknown) => `${String(taskId)}@${String(token)}`;
    const mine = () => commands.events.filter((c) => c.value.client_id === CLIENT);
    // What the executor reported, by attempt: its results (a task's, or a batch's items) and starts.
    const reported = () => {
      const results = new Map<string, boolean>();
      const starts = new Map<string, number>();
      for (const { name, value } of mine()) {
        if (name === "TaskStarted") starts.set(attempt(value.task_id, value.fencing_token), (starts.get(attempt(value.task_id, value.fencing_token)) ?? 0) + 1);
        if (name !== "ReportResult") continue;
        if (value.task_id != null) results.set(attempt(value.task_id, value.fencing_token), value.started as boolean);
        for (const item of value.items as { task_id: string; started: boolean }[]) results.set(attempt(item.task_id, value.fencing_token), item.started);
      }
      return { results, starts };
    };
    const completed = [...outcomes.values()].filter((o) => o.kind === "completed").map((o) => o.task_id);
    assert.ok(completed.length > 0);
    const { results, starts } = await waitFor("the results of the completed tasks on task.commands", () => {
      const r = reported();
      return completed.every((id) => [...r.results.keys()].some((k) => k.startsWith(`${id}@`))) ? r : undefined;
    });
    for (const [key, started] of results) assert.equal((starts.get(key) ?? 0) + (started ? 1 : 0), 1, `the starts of ${key}`);
    for (const [key, count] of starts) assert.equal(count, 1, `the TaskStarted records of ${key}`);
    // The batch job's children are fast: their starts travelled in the batch's result.
    const folded = [...results].filter(([key, started]) => key.startsWith("bj-") && started);
    assert.ok(folded.length > 0, "no start was folded into a result");
    for (const [key] of folded) {
      const taskId = key.slice(0, key.lastIndexOf("@"));
      await waitFor(`task.started of ${taskId}`, () => log.find("TaskStartedEvent", taskId));
      assert.equal(log.events.filter((e) => e.name === "TaskStartedEvent" && e.value.task_id === taskId).length, 1, `task.started of ${taskId}`);
    }
  });

  test("every event of this run decoded", () => {
    assert.equal(log.events.filter((e) => e.name === "undecodable").length, 0);
  });

  test("stop releases the session", async () => {
    await executor.stop();
    await waitFor("session.released", () => log.find("SessionReleased", SESSION, "session_id"));
    assert.equal(executor.metrics().running, 0);
  });
});
