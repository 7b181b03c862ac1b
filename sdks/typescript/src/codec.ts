/**
 * Avro single-object encoding (`C3 01`, the CRC-64-AVRO fingerprint of the writer schema's
 * Parsing Canonical Form little-endian, the Avro binary body), over avsc. The fingerprint alone
 * says what a record is: the codec knows every schema of schemas/avro/ (current and released
 * versions) and resolves a record written with an older version to the current schema.
 */
import * as avro from "avsc";
import { DecodeError, EncodeError } from "./errors";
import { RecordInits, RecordName, Records, SCHEMAS } from "./generated/schemas";

const MAGIC = Buffer.from([0xc3, 0x01]);
const HEADER_BYTES = 10;

const EMPTY = 0xc15d213aa4d7a795n;
const MASK = 0xffffffffffffffffn;
const TABLE: bigint[] = (() => {
  const table: bigint[] = [];
  for (let i = 0; i < 256; i++) {
    let fp = BigInt(i);
    for (let j = 0; j < 8; j++) fp = (fp >> 1n) ^ (EMPTY & -(fp & 1n) & MASK);
    table.push(fp);
  }
  return table;
})();

/** CRC-64-AVRO (Rabin) of `data`, as the 8 little-endian bytes of the header. */
export function crc64Avro(data: Uint8Array): Buffer {
  let fp = EMPTY;
  for (const b of data) fp = (fp >> 8n) ^ TABLE[Number((fp ^ BigInt(b)) & 0xffn)];
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(fp);
  return out;
}

/** The Parsing Canonical Form of a schema (avsc's canonical schema). */
export function canonicalForm(type: avro.Type): string {
  return JSON.stringify(type.schema());
}

export interface SchemaEntry {
  /** File name without .avsc: `SubmitTask`, `SubmitTask.v1`. */
  readonly file: string;
  /** Record name: `SubmitTask`. */
  readonly name: RecordName;
  /** null for the current schema, N for `<Name>.vN.avsc`. */
  readonly version: number | null;
  readonly type: avro.Type;
  readonly fingerprint: Buffer;
  readonly resolver?: avro.Resolver;
}

export interface Decoded<N extends RecordName = RecordName> {
  name: N;
  value: Records[N];
  /** The writer schema's entry (an older version when the record predates the current one). */
  writer: SchemaEntry;
}

function buildRegistry(): { byFile: Map<string, SchemaEntry>; byFingerprint: Map<string, SchemaEntry> } {
  const byFile = new Map<string, SchemaEntry>();
  const byFingerprint = new Map<string, SchemaEntry>();
  const files = Object.keys(SCHEMAS).sort((a, b) => a.length - b.length || a.localeCompare(b));
  for (const file of files) {
    const match = /^(.*?)(?:\.v(\d+))?$/.exec(file)!;
    const name = match[1] as RecordName;
    const version = match[2] === undefined ? null : Number(match[2]);
    const type = avro.Type.forSchema(SCHEMAS[file] as avro.Schema, { wrapUnions: false });
    const current = version === null ? undefined : byFile.get(name);
    const entry: SchemaEntry = {
      file,
      name,
      version,
      type,
      fingerprint: crc64Avro(Buffer.from(canonicalForm(type), "utf8")),
      resolver: current ? current.type.createResolver(type) : undefined,
    };
    byFile.set(file, entry);
    byFingerprint.set(entry.fingerprint.toString("hex"), entry);
  }
  return { byFile, byFingerprint };
}

const REGISTRY = buildRegistry();

/** The schema entry of a file name (`SubmitTask`, `TaskFailed.v1`). */
export function schemaEntry(file: string): SchemaEntry {
  const entry = REGISTRY.byFile.get(file);
  if (!entry) throw new EncodeError(`unknown schema ${file}`);
  return entry;
}

export function schemaEntries(): SchemaEntry[] {
  return [...REGISTRY.byFile.values()];
}

function validationProblems(type: avro.Type, value: unknown): string[] {
  const problems: string[] = [];
  type.isValid(value, {
    errorHook: (path: string[], any: unknown, t: avro.Type) => {
      const shown = typeof any === "string" ? JSON.stringify(any) : String(any);
      problems.push(`${path.join(".") || "record"}: ${shown} is not a valid ${t.typeName ?? t}`);
    },
  });
  return problems;
}

/** Encode `value` as a `name` record with its current schema (or `file`, an older one). */
export function encode<N extends RecordName>(name: N, value: RecordInits[N], file: string = name): Buffer {
  const entry = schemaEntry(file);
  if (entry.name !== name) throw new EncodeError(`schema ${file} is not a ${name}`);
  return encodeWith(entry, value);
}

/** Encode with a given schema entry; fields with an Avro default may be left out. */
export function encodeWith(entry: SchemaEntry, value: unknown): Buffer {
  const datum = withDefaults(entry.type, value);
  const problems = validationProblems(entry.type, datum);
  if (problems.length) throw new EncodeError(`invalid ${entry.name}: ${problems.join("; ")}`);
  return Buffer.concat([MAGIC, entry.fingerprint, entry.type.toBuffer(datum)]);
}

interface FieldLike {
  name: string;
  type: avro.Type;
  defaultValue(): unknown;
}

/** Fill left-out fields with their defaults (records nested in arrays too). */
function withDefaults(type: avro.Type, value: unknown): unknown {
  if (type.typeName === "record" && value !== null && typeof value === "object" && !Buffer.isBuffer(value)) {
    const fields = (type as unknown as { fields: FieldLike[] }).fields;
    const out: Record<string, unknown> = {};
    for (const field of fields) {
      let v = (value as Record<string, unknown>)[field.name];
      if (v === undefined) v = field.defaultValue();
      out[field.name] = withDefaults(field.type, v);
    }
    return out;
  }
  if (type.typeName === "array" && Array.isArray(value)) {
    const items = (type as unknown as { itemsType: avro.Type }).itemsType;
    return value.map((v) => withDefaults(items, v));
  }
  if (type.typeName === "union:unwrapped" && value !== null && value !== undefined) {
    const branches = (type as unknown as { types: avro.Type[] }).types;
    const record = branches.find((t) => t.typeName === "record" || t.typeName === "array");
    if (record) return withDefaults(record, value);
  }
  return value;
}

/** Decode a single-object encoded record, resolved to its current schema. */
export function decode(bytes: Uint8Array): Decoded {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
  if (buf.length < HEADER_BYTES || buf[0] !== MAGIC[0] || buf[1] !== MAGIC[1]) {
    throw new DecodeError("not Avro single-object encoding (no C3 01 header)");
  }
  const fp = buf.subarray(2, HEADER_BYTES).toString("hex");
  const writer = REGISTRY.byFingerprint.get(fp);
  if (!writer) throw new DecodeError(`unknown schema fingerprint ${fp}: upgrade this reader's schemas`);
  const reader = writer.version === null ? writer : schemaEntry(writer.name);
  let value: unknown;
  try {
    value = reader.type.fromBuffer(buf.subarray(HEADER_BYTES), writer.resolver);
  } catch (err) {
    throw new DecodeError(`cannot decode a ${writer.file} record: ${(err as Error).message}`, { cause: err });
  }
  return { name: writer.name, value: plain(value) as Records[RecordName], writer };
}

/** Decode and require a record name. */
export function decodeAs<N extends RecordName>(bytes: Uint8Array, name: N): Records[N] {
  const decoded = decode(bytes);
  if (decoded.name !== name) throw new DecodeError(`expected a ${name} record, got ${decoded.name}`);
  return decoded.value as Records[N];
}

/** avsc decodes records into class instances; hand out plain objects. */
function plain(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === "object" && !Buffer.isBuffer(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = plain(v);
    return out;
  }
  return value;
}
