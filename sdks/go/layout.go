package taskstream

import (
	"context"
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// LayoutProblems says what is wrong with the topics found (name -> partition count), each
// with how to fix it, taking the partition count task.commands has (like the Python SDK's
// check: a client does not own the layout). Empty when the layout is usable.
func LayoutProblems(cfg Config, existing map[string]int32) []string {
	var problems []string
	logical := append([]string{"commands", "events", "assignments", "pool", "completed", "failed", "dlq"}, RetryTiers...)
	for _, name := range logical {
		if _, ok := existing[cfg.Topic(name)]; !ok {
			problems = append(problems, fmt.Sprintf("topic %s does not exist: run `taskstream topics create`", cfg.Topic(name)))
		}
	}
	commands, okC := existing[cfg.Topic("commands")]
	events, okE := existing[cfg.Topic("events")]
	if okC && okE && commands != events {
		problems = append(problems, fmt.Sprintf(
			"topics %s (%d partitions) and %s (%d partitions) must have the same partition count: "+
				"each event is written to its command's partition",
			cfg.Topic("commands"), commands, cfg.Topic("events"), events))
	}
	if okC {
		for _, tier := range RetryTiers {
			if n, ok := existing[cfg.Topic(tier)]; ok && n < commands {
				problems = append(problems, fmt.Sprintf(
					"delay tier %s has %d partitions, fewer than the %d of %s: run `taskstream topics create` "+
						"to grow it (tier records name their home partition, so growing one is safe)",
					cfg.Topic(tier), n, commands, cfg.Topic("commands")))
			}
		}
	}
	return problems
}

// topicPartitionCounts asks the cluster for every topic, naming none: asking for a missing
// topic by name may auto-create it.
func topicPartitionCounts(ctx context.Context, cl *kgo.Client) (map[string]int32, error) {
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = nil // all topics
	req.AllowAutoTopicCreation = false
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, &BrokerError{Op: "read the topic layout", Err: err}
	}
	out := map[string]int32{}
	for _, t := range resp.Topics {
		if t.ErrorCode != 0 || t.Topic == nil {
			continue
		}
		out[*t.Topic] = int32(len(t.Partitions))
	}
	return out, nil
}

func checkLayout(ctx context.Context, cl *kgo.Client, cfg Config) (int32, error) {
	existing, err := topicPartitionCounts(ctx, cl)
	if err != nil {
		return 0, err
	}
	if problems := LayoutProblems(cfg, existing); len(problems) > 0 {
		sort.Strings(problems)
		return 0, &TopicLayoutError{Problems: append([]string{"not sending to " + cfg.Topic("commands")}, problems...)}
	}
	return existing[cfg.Topic("commands")], nil
}
