// BullMQ peer of `taskstream bench --peers`: no-op jobs through BullMQ on Redis, full lifecycle
// (add → a worker runs the job → the job is completed in Redis), with BullMQ's defaults except
// the worker's concurrency. Prints one JSON object on stdout.
//
//   node bullmq_bench.mjs --port 6379 --jobs 20000 --concurrency 8 --latency-seconds 5
//
// Rows: plain throughput, throughput with priorities (1..4), and add→completed latency at half
// the plain rate (jobs added one at a time on a timer, as a producer under steady load would).
import { Queue, Worker } from "bullmq";

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const connection = { host: "127.0.0.1", port: Number(arg("port", "6379")) };
const jobs = Number(arg("jobs", "20000"));
const concurrency = Number(arg("concurrency", "8"));
const latencySeconds = Number(arg("latency-seconds", "5"));
const CHUNK = 1000;

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

async function throughput(name, withPriorities) {
  const queue = new Queue(name, { connection });
  let done = 0;
  let finish;
  const allDone = new Promise((resolve) => (finish = resolve));
  const worker = new Worker(name, async () => null, { connection, concurrency });
  worker.on("completed", () => {
    done += 1;
    if (done === jobs) finish();
  });
  await worker.waitUntilReady();
  const started = process.hrtime.bigint();
  for (let i = 0; i < jobs; i += CHUNK) {
    const batch = [];
    for (let j = i; j < Math.min(jobs, i + CHUNK); j++) {
      const opts = withPriorities ? { priority: 1 + (j % 4) } : {};
      batch.push({ name: "noop", data: { i: j }, opts });
    }
    await queue.addBulk(batch);
  }
  await allDone;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  return { jobs, seconds, jobs_per_s: jobs / seconds };
}

async function latency(name, rate) {
  const queue = new Queue(name, { connection });
  const samples = [];
  const worker = new Worker(name, async () => null, { connection, concurrency });
  worker.on("completed", (job) => {
    samples.push(Number(process.hrtime.bigint() - BigInt(job.data.t)) / 1e6);
  });
  await worker.waitUntilReady();
  const total = Math.max(1, Math.round(rate * latencySeconds));
  const started = process.hrtime.bigint();
  for (let i = 0; i < total; i++) {
    const due = started + BigInt(Math.round((i / rate) * 1e9));
    const wait = Number(due - process.hrtime.bigint()) / 1e6;
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    await queue.add("noop", { t: process.hrtime.bigint().toString() });
  }
  const deadline = Date.now() + 30_000;
  while (samples.length < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  const sorted = [...samples].sort((a, b) => a - b);
  return { rate, jobs: total, completed: samples.length, p50_ms: percentile(sorted, 50), p99_ms: percentile(sorted, 99) };
}

const plain = await throughput("bench-plain", false);
const priorities = await throughput("bench-priorities", true);
const half = await latency("bench-latency", Math.max(1, Math.round(plain.jobs_per_s / 2)));
const pkg = JSON.parse(await (await import("node:fs/promises")).readFile(new URL("./node_modules/bullmq/package.json", import.meta.url)));
console.log(JSON.stringify({ system: "bullmq", version: pkg.version, concurrency, plain, priorities, latency: half }));
process.exit(0);
