package taskstream

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// Commands are validated and size-checked before anything reaches a broker: these run
// without one (the producer connects lazily and the layout is checked after validation).
func TestInvalidCommandsAreRefusedBeforeSending(t *testing.T) {
	client, err := NewClient(Config{Brokers: []string{"127.0.0.1:1"}, MaxPayloadBytes: 200})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	cases := map[string]func() error{
		"priority out of range": func() error {
			_, err := client.Submit(ctx, "c", "contact_create", nil, WithPriority(9))
			return err
		},
		"negative retries": func() error {
			_, err := client.Submit(ctx, "c", "contact_create", nil, WithMaxRetries(-1))
			return err
		},
		"payload not an object": func() error {
			_, err := client.Submit(ctx, "c", "contact_create", []int{1})
			return err
		},
		"payload not JSON": func() error {
			_, err := client.Submit(ctx, "c", "contact_create", json.RawMessage("{"))
			return err
		},
		"attachment not http": func() error {
			_, err := client.Submit(ctx, "c", "contact_create", nil, WithAttachment("ftp://x.example/a", "a", -1, ""))
			return err
		},
		"attachment without a name": func() error {
			_, err := client.Submit(ctx, "c", "contact_create", nil, WithAttachment("https://x.example/a", "", 10, "text/plain"))
			return err
		},
		"empty client": func() error {
			_, err := client.Submit(ctx, "", "contact_create", nil)
			return err
		},
		"control character in an id": func() error {
			_, err := client.Cancel(ctx, "c", "t\n1", "")
			return err
		},
		"session without capacity": func() error {
			_, err := client.RegisterSession(ctx, "c", "s", "a", 0)
			return err
		},
		"batch job parallelism": func() error {
			_, err := client.SubmitBatchJob(ctx, "c", "tag_add", nil, BatchJobOptions{Parallelism: -2})
			return err
		},
	}
	for name, call := range cases {
		err := call()
		var invalid *InvalidCommandError
		if !errors.As(err, &invalid) || !errors.Is(err, Error) {
			t.Errorf("%s: got %v, want an InvalidCommandError", name, err)
		}
	}
	_, err = client.Submit(ctx, "c", "contact_create", map[string]any{"blob": strings.Repeat("x", 300)})
	var tooLarge *PayloadTooLargeError
	if !errors.As(err, &tooLarge) || tooLarge.Limit != 200 {
		t.Errorf("oversized payload: got %v, want a PayloadTooLargeError", err)
	}
}

func TestLayoutProblemsNameTheFix(t *testing.T) {
	cfg := Config{TopicPrefix: "x"}
	all := map[string]int32{}
	for _, name := range append([]string{"commands", "events", "assignments", "pool", "completed", "failed", "dlq"}, RetryTiers...) {
		all[cfg.Topic(name)] = 4
	}
	if problems := LayoutProblems(cfg, all); len(problems) != 0 {
		t.Errorf("a complete layout has problems: %v", problems)
	}
	all["x.events"] = 2
	all["x.retry.8s"] = 1
	delete(all, "x.dlq")
	problems := strings.Join(LayoutProblems(cfg, all), "\n")
	for _, want := range []string{
		"topic x.dlq does not exist: run `taskstream topics create`",
		"x.commands (4 partitions) and x.events (2 partitions) must have the same partition count",
		"delay tier x.retry.8s has 1 partitions, fewer than the 4 of x.commands",
	} {
		if !strings.Contains(problems, want) {
			t.Errorf("problems %q lack %q", problems, want)
		}
	}
}

func TestNewExecutorChecksItsArguments(t *testing.T) {
	ctx := context.Background()
	session := SessionSpec{SessionID: "s", ClientID: "c", AgentID: "a"}
	if _, err := NewExecutor(ctx, Handlers{}, 0, WithSessions(session)); err == nil {
		t.Error("0 workers accepted")
	}
	if _, err := NewExecutor(ctx, Handlers{}, 2); err == nil {
		t.Error("an executor without sessions accepted")
	}
	if _, err := NewExecutor(ctx, Handlers{}, 2, WithSessions(session, session)); err == nil {
		t.Error("a session id twice accepted")
	}
	e, err := NewExecutor(ctx, Handlers{}, 3, WithSessions(session))
	if err != nil {
		t.Fatal(err)
	}
	if m := e.GetMetrics(); m.WorkerCount != 3 || m.Sessions != 1 || m.TotalTasks != 0 {
		t.Errorf("metrics of a new executor: %+v", m)
	}
}

func TestClientCommandsNameTheirActor(t *testing.T) {
	cmd := &SubmitTask{ClientID: "c", TaskID: "t", Operation: "op", Payload: "{}"}
	withActor(cmd, "ops@host")
	if cmd.Actor == nil || *cmd.Actor != "ops@host" {
		t.Errorf("actor %v", cmd.Actor)
	}
	named := &CancelTask{ClientID: "c", TaskID: "t", Actor: ptr("gateway-token")}
	withActor(named, "ops@host")
	if *named.Actor != "gateway-token" {
		t.Errorf("an actor already named was replaced by %q", *named.Actor)
	}
	t.Setenv("TASKSTREAM_ACTOR", "")
	if actor := ConfigFromEnv().Actor; !strings.Contains(actor, "@") {
		t.Errorf("default actor %q is not <user>@<host>", actor)
	}
	t.Setenv("TASKSTREAM_ACTOR", "billing-job")
	if actor := ConfigFromEnv().Actor; actor != "billing-job" {
		t.Errorf("TASKSTREAM_ACTOR gave %q", actor)
	}
}
