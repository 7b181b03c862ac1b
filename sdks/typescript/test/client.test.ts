// The client without Kafka: sends that start together share one topic layout check.
import { strict as assert } from "node:assert";
import { test } from "node:test";
import { TaskstreamClient } from "../src/client";
import { LOGICAL_TOPICS, topicName } from "../src/config";

type Metadata = { topics: { name: string; partitions: unknown[] }[] };

function fakeClient(): { client: TaskstreamClient; metadataCalls: () => number; sent: unknown[] } {
  const client = new TaskstreamClient({ brokers: ["127.0.0.1:1"], topicPrefix: "layout-test" });
  let calls = 0;
  const sent: unknown[] = [];
  const topics = LOGICAL_TOPICS.map((logical) => ({ name: topicName(client.config, logical), partitions: [0, 1, 2, 3] }));
  const admin = {
    fetchTopicMetadata: async (): Promise<Metadata> => {
      calls += 1;
      await new Promise((resolve) => setTimeout(resolve, 20)); // a round trip: the others start meanwhile
      return { topics };
    },
    disconnect: async () => undefined,
  };
  const producer = {
    send: async (record: { topic: string; messages: { partition: number }[] }) => {
      sent.push(record);
      return [{ topicName: record.topic, partition: record.messages[0].partition, baseOffset: String(sent.length - 1) }];
    },
    disconnect: async () => undefined,
  };
  Object.assign(client as unknown as Record<string, unknown>, { admin, producer });
  return { client, metadataCalls: () => calls, sent };
}

test("sends that start together check the topic layout once", async () => {
  const { client, metadataCalls, sent } = fakeClient();
  const ids = await Promise.all(Array.from({ length: 50 }, (_, i) => client.submit(`client-${i % 4}`, "contact_create", { i })));
  assert.equal(ids.length, 50);
  assert.equal(sent.length, 50);
  assert.equal(metadataCalls(), 1);
  await client.submit("client-0", "contact_create", {}); // the count is known now: no new check
  assert.equal(metadataCalls(), 1);
  await client.close();
});

test("a failed shared check fails every send waiting on it, and the next send checks again", async () => {
  const { client, metadataCalls } = fakeClient();
  const admin = (client as unknown as { admin: { fetchTopicMetadata: () => Promise<Metadata> } }).admin;
  const working = admin.fetchTopicMetadata;
  admin.fetchTopicMetadata = async () => {
    await working();
    throw new Error("broker went away");
  };
  const outcomes = await Promise.allSettled(Array.from({ length: 5 }, () => client.submit("c", "contact_create", {})));
  assert.deepEqual(outcomes.map((o) => o.status), Array(5).fill("rejected"));
  assert.equal(metadataCalls(), 1);
  admin.fetchTopicMetadata = working;
  await client.submit("c", "contact_create", {});
  assert.equal(metadataCalls(), 2);
  await client.close();
});
