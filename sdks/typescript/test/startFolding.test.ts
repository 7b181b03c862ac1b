// foldStarts and StartHold: a start still queued when its result joins it travels in the result.
import { strict as assert } from "node:assert";
import { test } from "node:test";
import { decodeAs } from "../src/codec";
import { CommandInit, CommandName, encodeCommand } from "../src/commands";
import { foldStarts, Queued, StartHold } from "../src/startFolding";

const q = <N extends CommandName>(name: N, command: CommandInit<N>): Queued => ({ name, command });
const start = (task: string, token = 1, client = "A") => q("TaskStarted", { client_id: client, task_id: task, fencing_token: token });
const done = (task: string, token = 1, client = "A", over: Partial<CommandInit<"ReportResult">> = {}) =>
  q("ReportResult", { client_id: client, task_id: task, fencing_token: token, success: true, ...over });
const progress = (task: string) => q("ReportProgress", { client_id: "A", task_id: task, fencing_token: 1, progress: 0.5 });
const beat = q("SessionHeartbeat", { client_id: "A", session_id: "s1" });
const register = q("RegisterSession", { client_id: "A", session_id: "s2", agent_id: "x", max_concurrent: 1 });
const release = q("ReleaseSession", { client_id: "A", session_id: "s2" });
const submit = q("SubmitTask", { client_id: "A", task_id: "n1", operation: "tag_add" });
const whole = q("ReportResult", { client_id: "A", batch_id: "b1", fencing_token: 7, success: true });
const batch = q("ReportResult", {
  client_id: "A", batch_id: "b1", fencing_token: 7, success: true,
  items: [{ task_id: "i0", success: true }, { task_id: "i1", success: true }],
});

/** What a list says, compactly: name, task and (on results) started. */
const shown = (commands: Queued[]) => commands.map((c) => {
  const v = c.command as { task_id?: string | null; batch_id?: string | null; started?: boolean };
  return [c.name, v.task_id ?? v.batch_id ?? null, c.name === "ReportResult" ? (v.started ?? false) : null];
});
const itemsStarted = (commands: Queued[]) => {
  assert.equal(commands.length, 1);
  return ((commands[0].command as CommandInit<"ReportResult">).items ?? []).map((i) => i.started ?? false);
};

test("a start followed by its result becomes the result with started", () => {
  assert.deepEqual(foldStarts([start("t1"), done("t1")]), [done("t1", 1, "A", { started: true })]);
});

test("interleaved tasks fold each and keep the others' order", () => {
  const out = foldStarts([start("t1"), start("t2"), done("t2"), start("t3"), done("t1")]);
  assert.deepEqual(shown(out), [["ReportResult", "t2", true], ["TaskStarted", "t3", null], ["ReportResult", "t1", true]]);
});

test("a result alone or a start alone is left as it is; only the same attempt folds", () => {
  const alone = [start("t1"), done("t2")];
  assert.deepEqual(foldStarts(alone), alone);
  assert.deepEqual(foldStarts([done("t1"), start("t1")]), [done("t1"), start("t1")]);
  const others = [start("t1", 1), done("t1", 2), start("t2", 1, "B"), done("t2")];
  assert.deepEqual(foldStarts(others), others);
});

test("progress between keeps the start in front of it", () => {
  const commands = [start("t1"), progress("t1"), done("t1")];
  assert.deepEqual(foldStarts(commands), commands);
});

test("heartbeats between do not stop a fold, a registration, a release or a submit does", () => {
  assert.deepEqual(foldStarts([start("t1"), beat, done("t1")]), [beat, done("t1", 1, "A", { started: true })]);
  for (const barrier of [register, release, submit]) {
    const commands = [start("t1"), barrier, done("t1")];
    assert.deepEqual(foldStarts(commands), commands);
  }
});

test("a batch result folds the starts of the items it names, a batch-level one none", () => {
  assert.deepEqual(itemsStarted(foldStarts([start("i0", 7), start("i1", 7), batch])), [true, true]);
  assert.deepEqual(itemsStarted(foldStarts([start("i0", 7), batch])), [true, false]);
  assert.deepEqual(foldStarts([start("i0", 7), whole]), [start("i0", 7), whole]);
});

test("a folded result round-trips through the codec", () => {
  const [folded] = foldStarts([start("t1"), done("t1")]);
  const bytes = encodeCommand("ReportResult", folded.command as CommandInit<"ReportResult">, 1 << 20);
  assert.equal(decodeAs(bytes, "ReportResult").started, true);
  const [items] = foldStarts([start("i0", 7), batch]);
  const decoded = decodeAs(encodeCommand("ReportResult", items.command as CommandInit<"ReportResult">, 1 << 20), "ReportResult");
  assert.deepEqual(decoded.items.map((i) => i.started), [true, false]);
});

// --- StartHold: the sender's rounds ------------------------------------------------------------

test("a start is held until its result comes and then folded", () => {
  const hold = new StartHold(20);
  assert.equal(hold.waitMs(0), null);
  assert.deepEqual(hold.round([start("t1")], 0), []);
  assert.equal(hold.size, 1);
  assert.equal(hold.waitMs(5), 15);
  assert.deepEqual(hold.round([done("t1")], 5), [done("t1", 1, "A", { started: true })]);
  assert.equal(hold.size, 0);
  assert.equal(hold.waitMs(5), null);
});

test("a start held for holdMs goes out alone, and its later result as it is", () => {
  const hold = new StartHold(20);
  hold.round([start("t1")], 0);
  assert.deepEqual(hold.round([], 10), []);
  assert.deepEqual(hold.round([], 20), [start("t1")]);
  assert.equal(hold.waitMs(20), null);
  assert.deepEqual(hold.round([done("t1")], 30), [done("t1")]);
});

test("progress after a start sends the start in front of it", () => {
  const hold = new StartHold(20);
  hold.round([start("t1"), start("t2")], 0);
  assert.deepEqual(hold.round([progress("t1")], 1), [start("t1"), progress("t1")]);
  assert.equal(hold.size, 1);
  assert.deepEqual(hold.round([], 30), [start("t2")]);
});

test("a registration, a release or a batch-level result after a start sends it first", () => {
  for (const barrier of [register, release, whole]) {
    const hold = new StartHold(20);
    assert.deepEqual(hold.round([start("t1"), barrier, start("t2")], 0), [start("t1"), barrier]);
    assert.deepEqual(hold.round([], 50), [start("t2")]);
  }
  // Held from an earlier round, a start goes before the registration that comes later.
  const hold = new StartHold(20);
  hold.round([start("t1")], 0);
  assert.deepEqual(hold.round([register, done("t1")], 2), [start("t1"), register, done("t1")]);
});

test("batch items fold per item across rounds; a heartbeat does not release a start", () => {
  const hold = new StartHold(20);
  assert.deepEqual(hold.round([start("i0", 7)], 0), []);
  assert.deepEqual(hold.round([beat, start("i1", 7)], 3), [beat]);
  assert.equal(hold.size, 2);
  assert.deepEqual(itemsStarted(hold.round([batch], 6)), [true, true]);
  assert.equal(hold.size, 0);
});

test("a hold of zero holds nothing", () => {
  const hold = new StartHold(0);
  assert.deepEqual(hold.round([start("t1")], 0), [start("t1")]);
  assert.deepEqual(hold.round([start("t2"), done("t2")], 0), [done("t2", 1, "A", { started: true })]);
});
