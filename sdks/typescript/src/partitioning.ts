/**
 * A client's home partition (docs/partitioning.md):
 * `(murmur2(utf8(client_id)) & 0x7fffffff) % partitions(task.commands)`, Kafka's murmur2 with
 * seed 0x9747b28c. Commands are sent to it by number; replies to a record the processor wrote
 * go to the number in its `ts-home` header instead.
 */
export function murmur2(data: Uint8Array): number {
  const m = 0x5bd1e995;
  const r = 24;
  const length = data.length;
  let h = (0x9747b28c ^ length) | 0;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k = (data[i4] & 0xff) | ((data[i4 + 1] & 0xff) << 8) | ((data[i4 + 2] & 0xff) << 16) | ((data[i4 + 3] & 0xff) << 24);
    k = Math.imul(k, m);
    k ^= k >>> r;
    k = Math.imul(k, m);
    h = Math.imul(h, m);
    h ^= k;
  }
  const rest = length & 3;
  const base = length & ~3;
  if (rest === 3) h ^= (data[base + 2] & 0xff) << 16;
  if (rest >= 2) h ^= (data[base + 1] & 0xff) << 8;
  if (rest >= 1) {
    h ^= data[base] & 0xff;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

export function homePartition(clientId: string, partitions: number): number {
  if (!Number.isInteger(partitions) || partitions < 1) {
    throw new RangeError(`partitions must be a positive integer, got ${partitions}`);
  }
  return (murmur2(Buffer.from(clientId, "utf8")) & 0x7fffffff) % partitions;
}

/** Header names of the wire contract (docs/protocol.md, "Headers"). */
export const TYPE_HEADER = "ts-type";
export const HOME_HEADER = "ts-home";

/** The partition a `ts-home` header names, or undefined when absent or not a number. */
export function homeFromHeader(value: Buffer | string | undefined | null): number | undefined {
  if (value === undefined || value === null) return undefined;
  const text = value.toString();
  return /^\d+$/.test(text) ? Number(text) : undefined;
}
