import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { crc64Avro, decode, decodeAs, encode } from "../src/codec";
import { DecodeError, EncodeError } from "../src/errors";
import { jsonText } from "../src/json";
import { homeFromHeader, homePartition } from "../src/partitioning";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { render } = require("../../scripts/generate-schemas.js") as { render: () => string };

test("the generated types and schemas are those of schemas/avro (run `npm run generate`)", () => {
  const committed = fs.readFileSync(path.resolve(__dirname, "..", "..", "src", "generated", "schemas.ts"), "utf8");
  assert.equal(committed, render());
});

test("CRC-64-AVRO of the empty input and of a known text", () => {
  // The fingerprint of "null" (a schema's canonical form) from the Avro specification's tests.
  assert.equal(crc64Avro(Buffer.from('"null"')).readBigUInt64LE(), 0x63dd24e7cc258f8an);
  assert.equal(crc64Avro(Buffer.alloc(0)).readBigUInt64LE(), 0xc15d213aa4d7a795n);
});

test("fields with defaults may be left out; decoding gives them", () => {
  const bytes = encode("SubmitTask", { client_id: "c", task_id: "t", operation: "send_sms" });
  const value = decodeAs(bytes, "SubmitTask");
  const { actor, ...rest } = value as typeof value & { actor?: unknown };
  assert.equal(actor ?? null, null);
  assert.deepEqual(rest, {
    client_id: "c", task_id: "t", operation: "send_sms", payload: "{}", priority: null, max_retries: null,
    timeout_ms: null, scheduled_for_ms: null, requires_review: false, depends_on: [], capabilities: [],
    title: null, description: null, tags: [], metadata: "{}", due_at_ms: null, assigned_to: null,
    steps: [], template: null, attachments: [],
  });
});

test("a value that does not fit its schema is refused with the field named", () => {
  assert.throws(() => encode("CancelTask", { client_id: "c" } as never), (err: unknown) => err instanceof EncodeError && /task_id/.test(err.message));
  assert.throws(() => encode("SubmitTask", { client_id: "c", task_id: "t", operation: "x", priority: 1.5 }), EncodeError);
});

test("unknown fingerprints and foreign bytes are decode errors", () => {
  const bytes = encode("ExpediteTask", { client_id: "c", task_id: "t" });
  const other = Buffer.from(bytes);
  other[5] ^= 0xff;
  assert.throws(() => decode(other), (err: unknown) => err instanceof DecodeError && /unknown schema fingerprint/.test(err.message));
  assert.throws(() => decode(Buffer.from("{}")), DecodeError);
  assert.throws(() => decodeAs(bytes, "CancelTask"), DecodeError);
});

test("JSON text is written as the Python codec writes it", () => {
  // json.dumps(..., sort_keys=True, separators=(",", ":")) of the same value.
  const expected = '{"a":{"b":[1,2,null,true],"\\u00e9":"\\u00fc\\ud83d\\ude00"},"m":"a\\"b\\\\c\\n\\u0001","z":1}';
  assert.equal(jsonText({ z: 1, a: { "é": "ü😀", b: [1, 2, null, true] }, m: 'a"b\\c\n\u0001' }), expected);
  assert.throws(() => jsonText({ x: NaN }), TypeError);
});

test("home partitions are Kafka's murmur2 of the client id, as the Python SDK computes them", () => {
  // streams.kafka.routing.home_partition(client, n) for n in (1, 4, 8, 13).
  const expected: Record<string, number[]> = {
    "": [0, 1, 1, 11], a: [0, 0, 4, 5], ab: [0, 2, 2, 10], abc: [0, 3, 3, 12],
    client_acme_001: [0, 2, 6, 7], "héllo-clïent": [0, 2, 6, 4], "c-ts-1234567": [0, 2, 6, 9],
  };
  for (const [client, parts] of Object.entries(expected)) {
    assert.deepEqual([1, 4, 8, 13].map((n) => homePartition(client, n)), parts, client);
  }
  assert.throws(() => homePartition("a", 0), RangeError);
  assert.equal(homeFromHeader(Buffer.from("7")), 7);
  assert.equal(homeFromHeader(undefined), undefined);
  assert.equal(homeFromHeader("x1"), undefined);
});
