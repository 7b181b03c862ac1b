/**
 * Fold a TaskStarted into the ReportResult that follows it in one send (as the Python
 * executor's `streams.executor.start_folding`).
 *
 * The executor sends its outbox in rounds: what queued while the last round's acks were awaited
 * goes out together. A fast handler's start and result are often in the same round; sending the
 * result alone with `started` set is one record instead of two for the executor, the broker and
 * the processor, and the processor records the same `task.started` before the outcome.
 *
 * Only what cannot change the processor's decisions is folded: the start and the result must be
 * of the same attempt (client, task, fencing token), with no other report of that task between
 * them (a ReportProgress keeps its start in front of it), and nothing but reports and heartbeats
 * between them. Everything else keeps its place and its order.
 *
 * A start is often sent alone only because the sender was idle when it was queued, a moment
 * before its result. `StartHold` keeps a start back for up to `holdMs` (the executor's 20 ms) so
 * that its result can still fold it in; a start held longer, or one that something about the
 * same task or a registration follows, goes out in its place. A start changes no decision of the
 * processor (`in_progress` is what the view shows), so holding it delays nothing else.
 */
import type { CommandInit, CommandName } from "./commands";

/** A command as the outbox holds it: its name and the fields it is encoded from. */
export interface Queued {
  readonly name: CommandName;
  readonly command: CommandInit;
}

/** `queued` with its ReportResult replaced by `result` (the executor encodes it again). */
export type Carry<T extends Queued> = (queued: T, result: CommandInit<"ReportResult">) => T;

export const withResult = <T extends Queued>(queued: T, result: CommandInit<"ReportResult">): T => ({ ...queued, command: result });

type Result = CommandInit<"ReportResult">;
type Attempt = string; // client_id, task_id, fencing_token

// Commands that say nothing about any task's attempt: a start may be folded across them.
// (This SDK sends no RegisterPool; it is neutral as in the Python executor.)
const NEUTRAL: ReadonlySet<string> = new Set(["SessionHeartbeat", "RegisterPool"]);

const key = (clientId: string, taskId: string, token: number): Attempt => `${clientId}\u0000${taskId}\u0000${token}`;

function attemptOf(command: CommandInit): Attempt {
  const c = command as CommandInit<"TaskStarted">;
  return key(c.client_id, c.task_id, c.fencing_token);
}

/**
 * `commands` in order, each TaskStarted whose result follows it folded into that result
 * (`started`, on the result or on the batch's item).
 */
export function foldStarts<T extends Queued>(commands: readonly T[], carry: Carry<T> = withResult): T[] {
  const pending = new Map<Attempt, number>(); // an unfolded start -> its index in `out`
  const out: (T | null)[] = [...commands];
  commands.forEach((queued, index) => {
    if (queued.name === "TaskStarted") pending.set(attemptOf(queued.command), index);
    else if (queued.name === "ReportProgress") pending.delete(attemptOf(queued.command));
    else if (queued.name === "ReportResult") out[index] = fold(queued, pending, out, carry);
    else if (!NEUTRAL.has(queued.name)) pending.clear(); // a registration, a release…: nothing folds across it
  });
  return out.filter((q): q is T => q !== null);
}

function fold<T extends Queued>(queued: T, pending: Map<Attempt, number>, out: (T | null)[], carry: Carry<T>): T {
  const result = queued.command as Result;
  const client = result.client_id;
  const token = result.fencing_token;
  if (result.batch_id == null) {
    if (result.task_id == null || result.started) return queued;
    const attempt = key(client, result.task_id, token);
    const index = pending.get(attempt);
    if (index === undefined) return queued;
    pending.delete(attempt);
    out[index] = null;
    return carry(queued, { ...result, started: true });
  }
  const items = result.items ?? [];
  if (items.length === 0) return queued; // a batch-level report: its items' starts stay as they are
  let changed = false;
  const folded = items.map((item) => {
    if (item.started) return item;
    const attempt = key(client, item.task_id, token);
    const index = pending.get(attempt);
    if (index === undefined) return item;
    pending.delete(attempt);
    out[index] = null;
    changed = true;
    return { ...item, started: true };
  });
  return changed ? carry(queued, { ...result, items: folded }) : queued;
}

/** The sender's rounds, with starts kept back for their results up to `holdMs`. */
export class StartHold<T extends Queued> {
  private held: [number, T][] = []; // (queued at, start), in queue order

  constructor(readonly holdMs: number, private readonly carry: Carry<T> = withResult) {}

  /** Starts held now: each is pending until it is sent or folded. */
  get size(): number {
    return this.held.length;
  }

  /** Milliseconds until the oldest held start is due (null: none is held). */
  waitMs(now: number): number | null {
    if (this.held.length === 0) return null;
    return Math.max(0, this.held[0][0] + this.holdMs - now);
  }

  /** What to send now: the held starts and `queued`, folded; the starts that may wait are kept. */
  round(queued: readonly T[], now: number): T[] {
    const since = new Map<T, number>(this.held.map(([at, start]) => [start, at]));
    for (const q of queued) if (q.name === "TaskStarted") since.set(q, now);
    const out = foldStarts([...this.held.map(([, start]) => start), ...queued], this.carry);
    const send: T[] = [];
    const held: [number, T][] = [];
    // Walk back to front: a start may wait only if nothing after it needs it in front.
    const blocked = new Set<Attempt>();
    let barrier = false;
    for (let i = out.length - 1; i >= 0; i--) {
      const q = out[i];
      if (q.name === "TaskStarted") {
        const at = since.get(q) ?? now;
        // (A millisecond's slack: the timers may fire that much early.)
        const young = at + this.holdMs > now + 1;
        if (young && !barrier && !blocked.has(attemptOf(q.command))) {
          held.push([at, q]);
          continue;
        }
      } else if (q.name === "ReportProgress" || q.name === "ReportResult") {
        const attempts = attemptsOf(q);
        if (attempts === null) barrier = true; // a batch-level result: it does not name its items
        else for (const a of attempts) blocked.add(a);
      } else if (!NEUTRAL.has(q.name)) {
        barrier = true;
      }
      send.push(q);
    }
    this.held = held.reverse();
    return send.reverse();
  }
}

/** The attempts a report is about (null: a batch's items it does not name). */
function attemptsOf(queued: Queued): Attempt[] | null {
  if (queued.name === "ReportProgress") return [attemptOf(queued.command)];
  const result = queued.command as Result;
  if (result.task_id != null) return [key(result.client_id, result.task_id, result.fencing_token)];
  const items = result.items ?? [];
  if (items.length === 0) return null;
  return items.map((item) => key(result.client_id, item.task_id, result.fencing_token));
}
