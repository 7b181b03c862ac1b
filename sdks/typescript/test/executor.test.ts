// The executor's sender without Kafka: a start is held back for its result (./startFolding),
// goes out alone when its handler runs longer, and flush/stop wait for what is held.
import { strict as assert } from "node:assert";
import { test } from "node:test";
import { decode, encode } from "../src/codec";
import { Executor } from "../src/executor";
import { Assignment } from "../src/generated/schemas";
import { Handler } from "../src/runner";

type Sent = { name: string; value: Record<string, unknown> };

interface Internals {
  onRecord(value: Buffer, home: undefined): void;
  emit(name: string, command: Record<string, unknown>): void;
  flush(): Promise<void>;
}

function fakeExecutor(handlers: Record<string, Handler>): { executor: Executor; internals: Internals; sent: Sent[]; sends: () => number } {
  const executor = new Executor({ brokers: ["127.0.0.1:1"], topicPrefix: "fold-test" }, {
    handlers, sessions: [{ sessionId: "s", clientId: "c", agentId: "a", maxConcurrent: 4 }],
  });
  const sent: Sent[] = [];
  let sends = 0;
  const producer = {
    send: async (record: { messages: { value: Buffer }[] }) => {
      sends += 1;
      await new Promise((resolve) => setImmediate(resolve)); // the acks: what is emitted meanwhile waits for the next round
      for (const m of record.messages) {
        const decoded = decode(m.value);
        sent.push({ name: decoded.name, value: decoded.value as unknown as Record<string, unknown> });
      }
      return [];
    },
    disconnect: async () => undefined,
  };
  Object.assign(executor as unknown as Record<string, unknown>, { producer, partitions: 4, started: true });
  return { executor, internals: executor as unknown as Internals, sent, sends: () => sends };
}

function assignment(over: Partial<Assignment> = {}): Buffer {
  const taskId = over.task_id === undefined ? "t-1" : over.task_id;
  return encode("Assignment", {
    kind: "task", client_id: "c", session_id: "s", operation: "op", task_id: taskId, batch_id: null, attempt: 1,
    fencing_token: 7, deadline_at_ms: 0, timeout_ms: 60_000, priority: 3,
    items: taskId ? [{ task_id: taskId, payload: "{}" }] : [], reason: null, ...over,
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const shown = (sent: Sent[]) => sent.map((s) => [s.name, s.value.task_id ?? s.value.batch_id ?? s.value.session_id, s.value.started ?? null]);

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !check(); i++) await sleep(2);
  assert.ok(check(), "gave up waiting");
}

test("a fast task's start travels in its result: one command", async () => {
  const { executor, internals, sent } = fakeExecutor({ op: async () => ({ ok: true }) });
  internals.onRecord(assignment(), undefined);
  await until(() => sent.length > 0);
  await internals.flush();
  assert.deepEqual(shown(sent), [["ReportResult", "t-1", true]]);
  await executor.stop();
  assert.deepEqual(shown(sent).slice(1), [["ReleaseSession", "s", null]]);
});

test("a start goes out alone after the hold when its handler runs longer", async () => {
  let finish!: () => void;
  const { executor, internals, sent } = fakeExecutor({ op: () => new Promise<void>((resolve) => (finish = resolve)) });
  internals.onRecord(assignment(), undefined);
  await until(() => sent.length > 0);
  assert.deepEqual(shown(sent), [["TaskStarted", "t-1", null]]);
  finish();
  await until(() => sent.length > 1);
  assert.deepEqual(shown(sent), [["TaskStarted", "t-1", null], ["ReportResult", "t-1", false]]);
  await executor.stop();
});

test("a progress report keeps its start in front of it", async () => {
  const { executor, internals, sent } = fakeExecutor({
    op: async (ctx) => {
      ctx.reportProgress(0.5);
      return {};
    },
  });
  internals.onRecord(assignment(), undefined);
  await until(() => sent.length > 2);
  assert.deepEqual(shown(sent), [["TaskStarted", "t-1", null], ["ReportProgress", "t-1", null], ["ReportResult", "t-1", false]]);
  await executor.stop();
});

test("a batch's result carries the starts of its items", async () => {
  const { executor, internals, sent } = fakeExecutor({ op: async () => ({}) });
  internals.onRecord(assignment({ kind: "batch", task_id: null, batch_id: "b-1", items: [{ task_id: "i0", payload: "{}" }, { task_id: "i1", payload: "{}" }] }), undefined);
  await until(() => sent.length > 0);
  await internals.flush();
  assert.deepEqual(shown(sent), [["ReportResult", "b-1", false]]);
  assert.deepEqual((sent[0].value.items as { task_id: string; started: boolean }[]).map((i) => [i.task_id, i.started]), [["i0", true], ["i1", true]]);
  await executor.stop();
});

test("flush waits for a held start; stop sends it before the release", async () => {
  const { executor, internals, sent, sends } = fakeExecutor({});
  internals.emit("TaskStarted", { client_id: "c", task_id: "t-1", fencing_token: 7 });
  await sleep(0);
  assert.equal(sent.length, 0, "held");
  await internals.flush();
  assert.deepEqual(shown(sent), [["TaskStarted", "t-1", null]]);
  internals.emit("TaskStarted", { client_id: "c", task_id: "t-2", fencing_token: 8 });
  await executor.stop();
  assert.deepEqual(shown(sent), [["TaskStarted", "t-1", null], ["TaskStarted", "t-2", null], ["ReleaseSession", "s", null]]);
  assert.equal(sends(), 2, "the release took the held start along, in one send");
});
