/**
 * One door for every command: validate, encode, size-check, before anything is produced, so a
 * bad request fails in the caller with a typed error instead of becoming a dead letter later.
 * The rules are those of the wire contract (docs/protocol.md, "Records"); the processor checks
 * them again.
 */
import { encode, schemaEntry } from "./codec";
import { EncodeError, InvalidCommandError, PayloadTooLargeError } from "./errors";
import { RecordInits } from "./generated/schemas";

export const COMMAND_NAMES = [
  "SubmitTask", "CancelTask", "ApproveTask", "RejectTask", "ExpediteTask", "SubmitBatchJob",
  "RegisterSession", "ReleaseSession", "SessionHeartbeat", "TaskStarted", "ReportProgress", "ReportResult",
] as const;
export type CommandName = (typeof COMMAND_NAMES)[number];
export type CommandInit<N extends CommandName = CommandName> = RecordInits[N];

const MAX_ID = 512;

/**
 * Who sends commands, written into their `actor` field when the caller names nobody:
 * TASKSTREAM_ACTOR, else `<user>@<host>` (as the Python and Go SDKs do).
 */
export function defaultActor(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TASKSTREAM_ACTOR) return env.TASKSTREAM_ACTOR;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const os = require("node:os") as typeof import("node:os");
  let user = "unknown";
  try {
    user = os.userInfo().username || user;
  } catch {
    // no passwd entry: keep "unknown"
  }
  return `${user}@${os.hostname()}`.slice(0, MAX_ID);
}

/** Set `actor` on commands whose schema has one, unless the caller set it. */
export function withActor<N extends CommandName>(name: N, command: CommandInit<N>, actor: string): CommandInit<N> {
  const fields = (schemaEntry(name).type as unknown as { fields: { name: string }[] }).fields;
  if (!fields.some((f) => f.name === "actor") || (command as { actor?: unknown }).actor !== undefined) return command;
  return { ...command, actor };
}
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

const ID_FIELDS = ["client_id", "task_id", "session_id", "agent_id", "batch_job_id", "operation", "batch_id"] as const;

function checkId(command: string, field: string, value: unknown, problems: string[]): void {
  if (typeof value !== "string") return; // the schema check names wrong types
  if (value.length < 1 || value.length > MAX_ID) problems.push(`${field}: must be 1 to ${MAX_ID} characters`);
  else if (CONTROL.test(value)) problems.push(`${field}: must not contain control characters`);
}

function checkInt(field: string, value: unknown, min: number, max: number, problems: string[]): void {
  if (value === null || value === undefined) return;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    problems.push(`${field}: must be an integer from ${min}${max === Number.MAX_SAFE_INTEGER ? "" : ` to ${max}`}, got ${String(value)}`);
  }
}

const ANY = Number.MAX_SAFE_INTEGER;

/** Validate `value` as a `name` command; returns its single-object encoding. */
export function encodeCommand<N extends CommandName>(name: N, value: CommandInit<N>, maxBytes: number): Buffer {
  if (!(COMMAND_NAMES as readonly string[]).includes(name)) throw new InvalidCommandError(`${name} is not a command`);
  const v = value as unknown as Record<string, unknown>;
  const problems: string[] = [];
  for (const field of ID_FIELDS) {
    if (v[field] === undefined || v[field] === null) {
      if (requiredId(name, field)) problems.push(`${field}: required`);
    } else {
      checkId(name, field, v[field], problems);
    }
  }
  checkInt("priority", v.priority, 1, 5, problems);
  checkInt("max_retries", v.max_retries, 0, ANY, problems);
  checkInt("timeout_ms", v.timeout_ms, 1, ANY, problems);
  checkInt("max_concurrent", v.max_concurrent, 1, ANY, problems);
  checkInt("parallelism", v.parallelism, 1, ANY, problems);
  if (name === "ReportProgress" && typeof v.progress === "number" && !(v.progress >= 0 && v.progress <= 1)) {
    problems.push(`progress: must be from 0.0 to 1.0, got ${v.progress}`);
  }
  if (name === "ReportResult" && (v.task_id == null) === (v.batch_id == null)) {
    problems.push("exactly one of task_id (a task) and batch_id (a batch) must be set");
  }
  for (const list of ["depends_on", "capabilities"]) {
    const items = v[list];
    if (Array.isArray(items)) items.forEach((item, i) => checkId(name, `${list}[${i}]`, item, problems));
  }
  if (problems.length) throw new InvalidCommandError(`invalid ${name}: ${problems.join("; ")}`);
  let bytes: Buffer;
  try {
    bytes = encode(name, value);
  } catch (err) {
    if (err instanceof EncodeError) throw new InvalidCommandError(err.message, { cause: err });
    throw err;
  }
  if (bytes.length > maxBytes) {
    throw new PayloadTooLargeError(
      `${name} for client ${JSON.stringify(v.client_id)} is ${bytes.length} bytes encoded; the limit is ${maxBytes} ` +
        "(TASKSTREAM_MAX_PAYLOAD_BYTES). Store large inputs elsewhere and pass a reference.",
    );
  }
  return bytes;
}

function requiredId(name: CommandName, field: string): boolean {
  switch (field) {
    case "client_id": return true;
    case "task_id": return ["SubmitTask", "CancelTask", "ApproveTask", "RejectTask", "ExpediteTask", "TaskStarted", "ReportProgress"].includes(name);
    case "session_id": return ["RegisterSession", "ReleaseSession", "SessionHeartbeat"].includes(name);
    case "agent_id": return name === "RegisterSession";
    case "batch_job_id": return name === "SubmitBatchJob";
    case "operation": return name === "SubmitTask" || name === "SubmitBatchJob";
    default: return false;
  }
}
