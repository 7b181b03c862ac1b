/**
 * The topic layout check the client and the executor run before their first send
 * (docs/partitioning.md, "Topics first"). Like the Python SDK, it takes the partition count
 * `task.commands` has and checks the rest fits it: every topic there, `task.events`
 * co-partitioned with the commands, every delay tier at least as wide. It reads the metadata
 * of all topics without naming one: asking for a missing topic by name may auto-create it.
 */
import { LOGICAL_TOPICS, RETRY_TIERS_S, TaskstreamConfig, topicName } from "./config";

/** What is wrong with `existing` (topic -> partition count), each with its fix; [] when usable. */
export function layoutProblems(config: Pick<TaskstreamConfig, "topicPrefix">, existing: ReadonlyMap<string, number>): string[] {
  const problems: string[] = [];
  for (const logical of LOGICAL_TOPICS) {
    const name = topicName(config, logical);
    if (!existing.has(name)) problems.push(`topic ${name} does not exist: run \`taskstream topics create\``);
  }
  const commandsName = topicName(config, "commands");
  const eventsName = topicName(config, "events");
  const commands = existing.get(commandsName);
  const events = existing.get(eventsName);
  if (commands !== undefined && events !== undefined && commands !== events) {
    problems.push(
      `topics ${commandsName} (${commands} partitions) and ${eventsName} (${events} partitions) must have the same ` +
        "partition count: each event is written to its command's partition; set TASKSTREAM_PARTITIONS and run `taskstream topics create`",
    );
  }
  if (commands !== undefined) {
    for (const s of RETRY_TIERS_S) {
      const name = topicName(config, `retry.${s}s`);
      const count = existing.get(name);
      if (count !== undefined && count < commands) {
        problems.push(
          `delay tier ${name} has ${count} partitions, fewer than the ${commands} of ${commandsName}: ` +
            "run `taskstream topics create` to grow it (tier records name their home partition, so growing one is safe)",
        );
      }
    }
  }
  return problems;
}
