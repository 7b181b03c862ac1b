/**
 * JSON text as taskstream writes it into Avro string fields (payload, output, ...): compact,
 * keys sorted, non-ASCII characters escaped as \uXXXX (Python's
 * `json.dumps(sort_keys=True, separators=(",", ":"))`), so a payload built in TypeScript
 * gives the same bytes as the Python SDK. Numbers are written the JavaScript way (1.0 is "1").
 */
export function jsonText(value: unknown): string {
  return JSON.stringify(sortKeys(value, 0)).replace(
    /[\u0080-\uffff]/g,
    (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"),
  );
}

const MAX_DEPTH = 64;

function sortKeys(value: unknown, depth: number): unknown {
  if (depth > MAX_DEPTH) throw new TypeError(`JSON nested deeper than ${MAX_DEPTH} levels`);
  if (typeof value === "number" && !Number.isFinite(value)) {
    throw new TypeError(`${value} is not valid JSON`);
  }
  if (Array.isArray(value)) return value.map((v) => sortKeys(v, depth + 1));
  if (value !== null && typeof value === "object") {
    const json = (value as { toJSON?: () => unknown }).toJSON;
    if (typeof json === "function") return sortKeys(json.call(value), depth);
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined && typeof v !== "function") out[key] = sortKeys(v, depth + 1);
    }
    return out;
  }
  return value;
}

/** Parse JSON text that must hold an object (payload, output). */
export function parseObject(text: string, what: string): Record<string, unknown> {
  const value: unknown = JSON.parse(text);
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new TypeError(`${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value) && !Buffer.isBuffer(value);
}
