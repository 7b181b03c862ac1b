import { Executor, TaskstreamClient } from "@taskstream/sdk";

async function main(): Promise<void> {
  // KAFKA_BOOTSTRAP_SERVERS and TASKSTREAM_TOPIC_PREFIX come from the environment.
  const client = await new TaskstreamClient().start();
  const executor = new Executor({}, {
    sessions: [{ sessionId: "bb_session_ts", clientId: "client_acme_001", agentId: "agent-ts", maxConcurrent: 2 }],
    handlers: {
      contact_create: async (ctx) => {
        ctx.reportProgress(0.5, "creating");
        if (ctx.signal.aborted) throw ctx.signal.reason; // cancelled or timed out
        return { contact_id: `ct_${ctx.payload.email as string}` };
      },
    },
  });
  await executor.start();

  const taskId = await client.submit("client_acme_001", "contact_create", { email: "ada@example.com" });
  const outcome = await new Promise<string>((resolve) => {
    void client.outcomes({ groupId: `readme-${taskId}` }, (o) => {
      if (o.task_id === taskId) resolve(o.kind === "completed" ? o.output : `${o.outcome}: ${o.reason}`);
    });
  });
  console.log(`${taskId}: ${outcome}`);

  await executor.stop(); // drains running work, releases the session
  await client.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
