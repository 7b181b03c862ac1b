// Every vector of schemas/vectors/: encode `value` to `bytes` exactly, decode `bytes` back to
// `value` (older versions: to `reads_as` under the current schema), and the fingerprint of
// each .avsc file as this SDK computes it equals the vector file's.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import type * as avro from "avsc";
import { decode, encodeWith, schemaEntry } from "../src/codec";

const VECTORS = path.resolve(__dirname, "..", "..", "..", "..", "schemas", "vectors");

interface Vector { name: string; value: unknown; bytes: string; reads_as?: unknown }
interface VectorFile { record: string; schema: string; version: number | null; fingerprint: string; vectors: Vector[] }

/** The vectors' JSON mapping: `bytes` fields as hex, unions unwrapped. */
function fromJson(type: avro.Type, value: unknown): unknown {
  const t = type as unknown as { typeName: string; fields?: { name: string; type: avro.Type }[]; itemsType?: avro.Type; types?: avro.Type[] };
  if (value === null) return null;
  switch (t.typeName) {
    case "bytes": return Buffer.from(value as string, "hex");
    case "record": return Object.fromEntries(t.fields!.map((f) => [f.name, fromJson(f.type, (value as Record<string, unknown>)[f.name])]));
    case "array": return (value as unknown[]).map((v) => fromJson(t.itemsType!, v));
    case "union:unwrapped": return fromJson(t.types!.find((b) => b.typeName !== "null")!, value);
    default: return value;
  }
}

function toJson(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return value.toString("hex");
  if (Array.isArray(value)) return value.map(toJson);
  if (value !== null && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJson(v)]));
  return value;
}

const files = fs.readdirSync(VECTORS).filter((f) => f.endsWith(".json")).sort();

test("there is a vector file for every schema file", () => {
  const schemas = fs.readdirSync(path.join(VECTORS, "..", "avro")).filter((f) => f.endsWith(".avsc")).map((f) => f.replace(/\.avsc$/, ".json"));
  assert.deepEqual(files, schemas.sort());
  assert.ok(files.length > 40);
});

for (const file of files) {
  const data = JSON.parse(fs.readFileSync(path.join(VECTORS, file), "utf8")) as VectorFile;
  const schemaFile = path.basename(data.schema).replace(/\.avsc$/, "");
  test(`vectors ${file}`, () => {
    const entry = schemaEntry(schemaFile);
    assert.equal(`taskstream.${entry.name}`, data.record);
    assert.equal(entry.version, data.version);
    assert.equal(entry.fingerprint.toString("hex"), data.fingerprint);
    assert.ok(data.vectors.length >= 2, "minimal and full at least");
    for (const v of data.vectors) {
      const encoded = encodeWith(entry, fromJson(entry.type, v.value));
      assert.equal(encoded.toString("hex"), v.bytes, `${file} ${v.name}: encode`);
      const decoded = decode(Buffer.from(v.bytes, "hex"));
      assert.equal(decoded.name, entry.name);
      assert.equal(decoded.writer.file, schemaFile);
      assert.deepEqual(toJson(decoded.value), data.version === null ? v.value : v.reads_as, `${file} ${v.name}: decode`);
    }
  });
}
