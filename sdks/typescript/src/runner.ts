/**
 * Runs assignments through handlers; knows assignments and commands but no Kafka. What it has
 * to say (TaskStarted, ReportProgress, ReportResult) goes to a `report` callback, so the
 * executor puts it on `task.commands` and tests collect it in a list.
 *
 * - Concurrency: a session's `maxConcurrent` bounds its handler calls running at once, batch
 *   items included. A slot is given back only when the handler has really returned, also after
 *   a timeout or a cancel was already reported (JavaScript cannot stop a function).
 * - A task: TaskStarted when its handler starts, then one ReportResult with the assignment's
 *   fencing token: the output, the error (`err.message`), "timeout" when it overran its
 *   timeout or its deadline, "shutdown" when the executor stopped before it finished. (The
 *   executor may send a start inside its result instead: ./startFolding.)
 * - A batch: TaskStarted per item, then one ReportResult with batch_id and an ItemResult per
 *   item.
 * - A cancel: the handler's AbortSignal fires; a cancelled task reports nothing (the processor
 *   has already ended it), a cancelled item of a running batch is an ItemResult "cancelled".
 */
import { ExecutorError } from "./errors";
import { Assignment, ItemResultInit } from "./generated/schemas";
import { jsonText, parseObject } from "./json";
import type { CommandInit } from "./commands";

export const TIMEOUT = "timeout";
export const CANCELLED = "cancelled";
export const SHUTDOWN = "shutdown";

export type Payload = Record<string, unknown>;

/** What a handler sees of one task (or one item of a batch). */
export interface TaskContext {
  readonly taskId: string;
  readonly clientId: string;
  readonly operation: string;
  readonly payload: Payload;
  readonly attempt: number;
  readonly fencingToken: number;
  readonly sessionId: string | null;
  readonly batchId: string | null;
  /** Epoch ms by which the result must be in (0: none given). */
  readonly deadlineAtMs: number;
  /** Milliseconds this call may run. */
  readonly timeoutMs: number;
  /** Aborted on a cancel, a timeout or shutdown; `signal.reason` is the TaskAbort. */
  readonly signal: AbortSignal;
  /** Progress in [0, 1] (clamped), sent as ReportProgress; ignored once the task ended. */
  reportProgress(fraction: number, message?: string | null): void;
}

/** Why a handler's signal was aborted. */
export class TaskAbort extends Error {
  constructor(readonly reason: typeof TIMEOUT | typeof CANCELLED | typeof SHUTDOWN) {
    super(`task ${reason}`);
    this.name = "TaskAbort";
  }
}

/** Return the output object (or nothing for {}); throw to fail the task with the message. */
export type Handler = (ctx: TaskContext) => Promise<Payload | void> | Payload | void;

export type Report = (
  ...args:
    | ["TaskStarted", CommandInit<"TaskStarted">]
    | ["ReportProgress", CommandInit<"ReportProgress">]
    | ["ReportResult", CommandInit<"ReportResult">]
) => void;

export interface RunnerMetrics {
  /** Tasks received (each batch item counts once). */
  total: number;
  completed: number;
  /** Failures, timeouts included. */
  failed: number;
  /** Stopped by a cancel or by shutdown. */
  cancelled: number;
  /** Handlers running now. */
  running: number;
  /** Assignments accepted and not finished. */
  jobs: number;
}

export interface RunnerOptions {
  handlers: Record<string, Handler>;
  report: Report;
  defaultHandler?: Handler;
  /** When an assignment carries no timeout_ms. */
  defaultTimeoutMs?: number;
  /** Handler calls at once for work without a session (pool work). */
  poolConcurrency?: number;
  now?: () => number;
}

class Semaphore {
  private waiters: (() => void)[] = [];
  constructor(private free: number) {}
  acquire(): Promise<void> {
    if (this.free > 0) {
      this.free -= 1;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.free += 1;
  }
}

interface Item {
  taskId: string;
  payload: Payload;
  controller: AbortController;
  finished: boolean;
}

interface Job {
  assignment: Assignment;
  items: Item[];
  done: Promise<void>;
}

interface ItemOutcome {
  success: boolean;
  output: string;
  error: string | null;
  cancelled: boolean;
}

const ok = (output: string): ItemOutcome => ({ success: true, output, error: null, cancelled: false });
const fail = (error: string, cancelled = false): ItemOutcome => ({ success: false, output: "{}", error, cancelled });

export class Runner {
  private readonly slots = new Map<string, Semaphore>();
  private readonly poolSlots: Semaphore;
  private readonly jobs = new Set<Job>();
  private readonly now: () => number;
  private readonly defaultTimeoutMs: number;
  private closing = false;
  private readonly counts = { total: 0, completed: 0, failed: 0, cancelled: 0, running: 0 };

  constructor(private readonly options: RunnerOptions) {
    this.now = options.now ?? Date.now;
    this.defaultTimeoutMs = options.defaultTimeoutMs ?? 300_000;
    if (!(this.defaultTimeoutMs > 0)) throw new ExecutorError(`defaultTimeoutMs must be positive, got ${this.defaultTimeoutMs}`);
    this.poolSlots = new Semaphore(Math.max(1, options.poolConcurrency ?? 4));
  }

  /** Bound the handler calls of a session. */
  addSession(sessionId: string, maxConcurrent: number): void {
    if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1) throw new ExecutorError(`maxConcurrent must be a positive integer, got ${maxConcurrent}`);
    this.slots.set(sessionId, new Semaphore(maxConcurrent));
  }

  metrics(): RunnerMetrics {
    return { ...this.counts, jobs: this.jobs.size };
  }

  /** Start a task or batch assignment; the promise settles once its result was reported. */
  run(assignment: Assignment): Promise<void> {
    if (this.closing) throw new ExecutorError("the executor is shutting down");
    const items = itemsOf(assignment).map(([taskId, payload]) => ({ taskId, payload, controller: new AbortController(), finished: false }));
    const job: Job = { assignment, items, done: Promise.resolve() };
    this.counts.total += items.length;
    this.jobs.add(job);
    job.done = this.runJob(job).finally(() => this.jobs.delete(job));
    return job.done;
  }

  /**
   * Apply a cancel assignment: by task_id (a task, or an item of a batch) or, without one, by
   * batch_id. Work with a newer fencing token than a non-zero cancel token is left alone.
   */
  cancel(cancel: Assignment): number {
    let reached = 0;
    for (const job of this.jobs) {
      if (cancel.fencing_token > 0 && job.assignment.fencing_token > cancel.fencing_token) continue;
      for (const item of job.items) {
        const hit = cancel.task_id != null ? item.taskId === cancel.task_id : cancel.batch_id != null && job.assignment.batch_id === cancel.batch_id;
        if (hit && !item.finished && !item.controller.signal.aborted) {
          item.controller.abort(new TaskAbort(CANCELLED));
          reached += 1;
        }
      }
    }
    return reached;
  }

  /**
   * Stop taking work and wait up to `drainTimeoutMs` for what runs; then abort the rest
   * (reported as failure "shutdown") and wait for those reports. True when all drained.
   */
  async close(drainTimeoutMs: number): Promise<boolean> {
    this.closing = true;
    const all = () => Promise.all([...this.jobs].map((j) => j.done)).then(() => true);
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([all(), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), drainTimeoutMs)))]);
    clearTimeout(timer);
    if (drained) return true;
    for (const job of this.jobs) for (const item of job.items) if (!item.finished) item.controller.abort(new TaskAbort(SHUTDOWN));
    await all();
    return false;
  }

  private slotsFor(assignment: Assignment): Semaphore {
    if (assignment.session_id == null) return this.poolSlots;
    let slots = this.slots.get(assignment.session_id);
    if (!slots) {
      slots = new Semaphore(1);
      this.slots.set(assignment.session_id, slots);
    }
    return slots;
  }

  private async runJob(job: Job): Promise<void> {
    const a = job.assignment;
    const started = this.now();
    const outcomes = await Promise.all(job.items.map((item) => this.runItem(job, item)));
    for (const o of outcomes) {
      if (o.success) this.counts.completed += 1;
      else if (o.cancelled || o.error === SHUTDOWN) this.counts.cancelled += 1;
      else this.counts.failed += 1;
    }
    const elapsed = Math.max(0, this.now() - started);
    if (a.kind === "task") {
      const o = outcomes[0];
      if (o.cancelled) return;
      this.options.report("ReportResult", {
        client_id: a.client_id, task_id: a.task_id, session_id: a.session_id, fencing_token: a.fencing_token,
        success: o.success, output: o.output, error: o.error, execution_time_ms: elapsed,
      });
      return;
    }
    if (outcomes.every((o) => o.cancelled)) return;
    const failures = outcomes.filter((o) => !o.success).length;
    const items: ItemResultInit[] = job.items.map((item, i) => ({ task_id: item.taskId, success: outcomes[i].success, output: outcomes[i].output, error: outcomes[i].error }));
    this.options.report("ReportResult", {
      client_id: a.client_id, batch_id: a.batch_id, session_id: a.session_id, fencing_token: a.fencing_token,
      success: failures === 0,
      output: jsonText({ succeeded: outcomes.length - failures, failed: failures }),
      error: failures === 0 ? null : `${failures} of ${outcomes.length} items failed`,
      items, execution_time_ms: elapsed,
    });
  }

  private async runItem(job: Job, item: Item): Promise<ItemOutcome> {
    const a = job.assignment;
    const slots = this.slotsFor(a);
    await slots.acquire();
    let called = false;
    const release = () => slots.release();
    try {
      const aborted = abortOutcome(item.controller.signal);
      if (aborted) return aborted;
      const handler = this.options.handlers[a.operation] ?? this.options.defaultHandler;
      if (!handler) return fail(`no handler for operation ${JSON.stringify(a.operation)}`);
      let timeoutMs = a.timeout_ms > 0 ? a.timeout_ms : this.defaultTimeoutMs;
      if (a.deadline_at_ms > 0) timeoutMs = Math.min(timeoutMs, a.deadline_at_ms - this.now());
      if (timeoutMs <= 0) return fail(TIMEOUT); // past its deadline: another attempt may run already
      this.options.report("TaskStarted", { client_id: a.client_id, task_id: item.taskId, fencing_token: a.fencing_token });
      const ctx: TaskContext = {
        taskId: item.taskId, clientId: a.client_id, operation: a.operation, payload: item.payload, attempt: a.attempt,
        fencingToken: a.fencing_token, sessionId: a.session_id, batchId: a.batch_id, deadlineAtMs: a.deadline_at_ms,
        timeoutMs, signal: item.controller.signal,
        reportProgress: (fraction, message = null) => {
          if (item.finished || item.controller.signal.aborted) return;
          const progress = Math.min(1, Math.max(0, Number(fraction) || 0));
          this.options.report("ReportProgress", { client_id: a.client_id, task_id: item.taskId, fencing_token: a.fencing_token, progress, message });
        },
      };
      this.counts.running += 1;
      called = true;
      const call = Promise.resolve().then(() => handler(ctx));
      // The slot is free again only when the handler itself returned.
      call.then(release, release).finally(() => (this.counts.running -= 1));
      const stopped = new Promise<ItemOutcome>((resolve) => {
        const timer = setTimeout(() => item.controller.abort(new TaskAbort(TIMEOUT)), timeoutMs);
        // Once aborted (cancel, timeout, shutdown) the timer has nothing left to do: a handler
        // that ignores its signal must not hold the process open until the timeout.
        const onAbort = () => {
          clearTimeout(timer);
          resolve(abortOutcome(item.controller.signal)!);
        };
        item.controller.signal.addEventListener("abort", onAbort, { once: true });
        call.finally(() => {
          clearTimeout(timer);
          item.controller.signal.removeEventListener("abort", onAbort);
        }).catch(() => undefined);
      });
      const finished = call.then(outputOf, (err: unknown) => fail(errorText(err)));
      const outcome = await Promise.race([finished, stopped]);
      // Cancelled while running: whatever the handler did on its way out does not count.
      return abortOutcome(item.controller.signal) ?? outcome;
    } finally {
      item.finished = true;
      if (!called) release();
    }
  }
}

function abortOutcome(signal: AbortSignal): ItemOutcome | null {
  if (!signal.aborted) return null;
  const reason = signal.reason instanceof TaskAbort ? signal.reason.reason : CANCELLED;
  return reason === CANCELLED ? fail(CANCELLED, true) : fail(reason);
}

function errorText(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err) || "error";
}

function outputOf(result: unknown): ItemOutcome {
  if (result === undefined || result === null) return ok("{}");
  if (typeof result !== "object" || Array.isArray(result)) return fail(`handler returned ${Array.isArray(result) ? "an array" : typeof result}, expected an object`);
  try {
    return ok(jsonText(result));
  } catch (err) {
    return fail(`handler output is not JSON: ${(err as Error).message}`);
  }
}

function itemsOf(a: Assignment): [string, Payload][] {
  const parse = (text: string, taskId: string): Payload => {
    try {
      return parseObject(text, `payload of task ${taskId}`);
    } catch (err) {
      throw new ExecutorError(`malformed assignment: ${(err as Error).message}`);
    }
  };
  if (a.kind === "task") {
    if (a.task_id == null) throw new ExecutorError("task assignment without task_id");
    const item = a.items.find((i) => i.task_id === a.task_id) ?? a.items[0];
    return [[a.task_id, item ? parse(item.payload, a.task_id) : {}]];
  }
  if (a.kind === "batch") {
    if (a.items.length === 0) throw new ExecutorError(`batch assignment ${a.batch_id} without items`);
    return a.items.map((i) => [i.task_id, parse(i.payload, i.task_id)]);
  }
  throw new ExecutorError(`cannot run an assignment of kind ${JSON.stringify(a.kind)}`);
}
