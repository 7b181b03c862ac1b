// The runner without Kafka: what it reports, per-session concurrency, timeouts, cancels, drain.
import { strict as assert } from "node:assert";
import { test } from "node:test";
import { Assignment } from "../src/generated/schemas";
import { Handler, Runner, TaskAbort, TaskContext } from "../src/runner";

type Reported = [string, Record<string, unknown>];

function assignment(over: Partial<Assignment> = {}): Assignment {
  const taskId = over.task_id === undefined ? "t-1" : over.task_id;
  return {
    kind: "task", client_id: "c", session_id: "s", operation: "op", task_id: taskId, batch_id: null, attempt: 1,
    fencing_token: 7, deadline_at_ms: 0, timeout_ms: 60_000, priority: 3,
    items: taskId ? [{ task_id: taskId, payload: '{"n":1}' }] : [], reason: null, ...over,
  };
}

function batch(ids: string[], over: Partial<Assignment> = {}): Assignment {
  return assignment({ kind: "batch", task_id: null, batch_id: "b-1", items: ids.map((id) => ({ task_id: id, payload: `{"id":"${id}"}` })), ...over });
}

function setup(handlers: Record<string, Handler>, maxConcurrent = 1): { runner: Runner; reported: Reported[] } {
  const reported: Reported[] = [];
  const runner = new Runner({ handlers, report: (name, cmd) => reported.push([name, cmd as unknown as Record<string, unknown>]) });
  runner.addSession("s", maxConcurrent);
  return { runner, reported };
}

function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

const results = (reported: Reported[]) => reported.filter(([n]) => n === "ReportResult").map(([, c]) => c);

test("a task reports started, progress and its result with the fencing token", async () => {
  const { runner, reported } = setup({
    op: async (ctx) => {
      ctx.reportProgress(0.5, "half");
      ctx.reportProgress(7);
      return { doubled: (ctx.payload.n as number) * 2, name: "é" };
    },
  });
  await runner.run(assignment());
  assert.deepEqual(reported.map(([n]) => n), ["TaskStarted", "ReportProgress", "ReportProgress", "ReportResult"]);
  assert.deepEqual(reported[0][1], { client_id: "c", task_id: "t-1", fencing_token: 7 });
  assert.equal(reported[1][1].progress, 0.5);
  assert.equal(reported[2][1].progress, 1);
  const [result] = results(reported);
  assert.equal(result.success, true);
  assert.equal(result.output, '{"doubled":2,"name":"\\u00e9"}');
  assert.equal(result.fencing_token, 7);
  assert.equal(result.session_id, "s");
  assert.equal(result.task_id, "t-1");
  assert.deepEqual(runner.metrics(), { total: 1, completed: 1, failed: 0, cancelled: 0, running: 0, jobs: 0 });
});

test("a handler that throws, returns a non-object or is missing fails the task in words", async () => {
  const { runner, reported } = setup({
    op: () => { throw new Error("upstream 503"); },
    bad: () => [1, 2] as unknown as Record<string, unknown>,
  });
  await runner.run(assignment());
  await runner.run(assignment({ operation: "bad", task_id: "t-2" }));
  await runner.run(assignment({ operation: "nothing", task_id: "t-3" }));
  assert.deepEqual(results(reported).map((r) => [r.success, r.error]), [
    [false, "upstream 503"], [false, "handler returned an array, expected an object"], [false, 'no handler for operation "nothing"'],
  ]);
  assert.equal(runner.metrics().failed, 3);
});

test("a session's maxConcurrent bounds its handler calls, batch items included", async () => {
  let running = 0;
  let most = 0;
  const gates: (() => void)[] = [];
  const { runner, reported } = setup({
    op: async () => {
      running += 1;
      most = Math.max(most, running);
      const g = gate();
      gates.push(g.open);
      await g.wait;
      running -= 1;
      return {};
    },
  }, 2);
  const all = [runner.run(assignment({ task_id: "a" })), runner.run(batch(["b", "c", "d"])), runner.run(assignment({ task_id: "e" }))];
  while (results(reported).length < 3) {
    await new Promise((r) => setImmediate(r));
    assert.ok(running <= 2, `running ${running}`);
    gates.shift()?.();
  }
  await Promise.all(all);
  assert.equal(most, 2);
  const batchResult = results(reported).find((r) => r.batch_id === "b-1")!;
  assert.deepEqual((batchResult.items as { task_id: string; success: boolean }[]).map((i) => [i.task_id, i.success]), [["b", true], ["c", true], ["d", true]]);
  assert.equal(batchResult.output, '{"failed":0,"succeeded":3}');
});

test("a task past its timeout is reported as timeout and its signal aborted", async () => {
  let seen: TaskContext | undefined;
  const { runner, reported } = setup({
    op: (ctx) => {
      seen = ctx;
      return new Promise<void>(() => undefined); // never returns, ignores the signal
    },
  });
  await runner.run(assignment({ timeout_ms: 20 }));
  assert.deepEqual(results(reported).map((r) => [r.success, r.error]), [[false, "timeout"]]);
  assert.ok(seen!.signal.aborted);
  assert.equal((seen!.signal.reason as TaskAbort).reason, "timeout");
});

test("work past its deadline does not start", async () => {
  let called = false;
  const { runner, reported } = setup({ op: () => { called = true; } });
  await runner.run(assignment({ deadline_at_ms: Date.now() - 1 }));
  assert.equal(called, false);
  assert.deepEqual(results(reported).map((r) => r.error), ["timeout"]);
  assert.equal(reported.some(([n]) => n === "TaskStarted"), false);
});

test("a cancel aborts the handler's signal; a cancelled task reports nothing, a batch item fails as cancelled", async () => {
  const started: string[] = [];
  const { runner, reported } = setup({
    op: (ctx) => new Promise((resolve, reject) => {
      started.push(ctx.taskId);
      if (ctx.taskId === "y") return resolve({ ok: true });
      ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason));
    }),
  }, 4);
  const single = runner.run(assignment({ task_id: "t-9", fencing_token: 3 }));
  const batched = runner.run(batch(["x", "y"], { fencing_token: 4 }));
  while (started.length < 3) await new Promise((r) => setImmediate(r));
  // A cancel older than the work (lower token) leaves it alone.
  assert.equal(runner.cancel(assignment({ kind: "cancel", task_id: "x", fencing_token: 2, items: [] })), 0);
  assert.equal(runner.cancel(assignment({ kind: "cancel", task_id: "t-9", fencing_token: 3, items: [] })), 1);
  assert.equal(runner.cancel(assignment({ kind: "cancel", task_id: "x", batch_id: "b-1", fencing_token: 0, items: [] })), 1);
  await Promise.all([single, batched]);
  const out = results(reported);
  assert.equal(out.length, 1, "the cancelled single task reports nothing");
  assert.deepEqual((out[0].items as { task_id: string; success: boolean; error: string | null }[]).map((i) => [i.task_id, i.success, i.error]), [["x", false, "cancelled"], ["y", true, null]]);
  assert.equal(runner.metrics().cancelled, 2);
});

test("close drains running work within the bound, then stops the rest as shutdown", async () => {
  const g = gate();
  const { runner, reported } = setup({
    op: async (ctx) => {
      if (ctx.taskId === "slow") await g.wait;
      else await new Promise<void>((r) => setImmediate(r));
      return { id: ctx.taskId };
    },
    stuck: () => new Promise<void>(() => undefined),
  }, 3);
  void runner.run(assignment({ task_id: "quick" }));
  void runner.run(assignment({ task_id: "slow" }));
  const closing = runner.close(60_000);
  assert.throws(() => runner.run(assignment({ task_id: "late" })), /shutting down/);
  g.open();
  assert.equal(await closing, true);
  assert.deepEqual(results(reported).map((r) => [r.task_id, r.success]).sort(), [["quick", true], ["slow", true]]);

  const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
  const before = timers();
  const second = setup({ stuck: () => new Promise<void>(() => undefined) });
  void second.runner.run(assignment({ task_id: "forever", operation: "stuck" }));
  assert.equal(await second.runner.close(10), false);
  assert.deepEqual(results(second.reported).map((r) => [r.task_id, r.success, r.error]), [["forever", false, "shutdown"]]);
  // The stopped task's timeout timer (60 s here) is gone: it would hold the process open.
  assert.equal(timers(), before);
});
