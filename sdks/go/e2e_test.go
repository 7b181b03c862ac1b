package taskstream

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// The end-to-end run needs a broker with the topics created (`taskstream topics create`), a
// Python processor and a delay agent on them: tests/integration/test_sdk_go.py starts those
// and runs `go test ./...` with KAFKA_BOOTSTRAP_SERVERS and TASKSTREAM_TOPIC_PREFIX set.
// TASKSTREAM_E2E_PY_CLIENT and TASKSTREAM_E2E_PY_TASK name a task the Python client
// submitted before: this executor serves a session of that client and must run it.
func e2eConfig(t *testing.T) Config {
	t.Helper()
	if os.Getenv("KAFKA_BOOTSTRAP_SERVERS") == "" {
		t.Skip("KAFKA_BOOTSTRAP_SERVERS is not set: the end-to-end test needs a broker with " +
			"the topics created and a taskstream processor running (tests/integration/test_sdk_go.py)")
	}
	return ConfigFromEnv()
}

func TestLayoutCheckRefusesMissingTopics(t *testing.T) {
	cfg := e2eConfig(t)
	cfg.TopicPrefix = "absent-" + NewUUID()[:8]
	client, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = client.Submit(ctx, "c", "contact_create", nil)
	var layout *TopicLayoutError
	if !errors.As(err, &layout) {
		t.Fatalf("submit to a missing layout: %v, want a TopicLayoutError", err)
	}
	counts, err := topicPartitionCounts(ctx, client.kafka)
	if err != nil {
		t.Fatal(err)
	}
	if _, created := counts[cfg.Topic("commands")]; created {
		t.Error("the layout check created the commands topic")
	}
}

type progressSeen struct {
	mu     sync.Mutex
	status map[string][]TaskStatus
}

func (p *progressSeen) record(taskID string, status TaskStatus, _ int, _ string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status[taskID] = append(p.status[taskID], status)
}

func (p *progressSeen) saw(taskID string, status TaskStatus) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.status[taskID] {
		if s == status {
			return true
		}
	}
	return false
}

func TestEndToEndWithTheProcessor(t *testing.T) {
	cfg := e2eConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	run := NewUUID()[:8]
	clientID := "go-client-" + run
	pyClient, pyTask := os.Getenv("TASKSTREAM_E2E_PY_CLIENT"), os.Getenv("TASKSTREAM_E2E_PY_TASK")

	blocked := make(chan struct{}, 1)
	sawCancel := make(chan error, 1)
	handlers := Handlers{
		"workflow_trigger": func(ctx context.Context, task *Task) (map[string]any, error) {
			var in struct {
				Block bool   `json:"block"`
				Fail  string `json:"fail"`
			}
			if err := task.DecodePayload(&in); err != nil {
				return nil, err
			}
			if in.Block {
				blocked <- struct{}{}
				<-ctx.Done() // the cancel assignment reaches the handler as its context
				sawCancel <- context.Cause(ctx)
				return nil, ctx.Err()
			}
			if in.Fail != "" {
				return nil, errors.New(in.Fail)
			}
			task.ReportProgress(0.5, "half way")
			return map[string]any{"ran": task.ID, "by": "go", "token": task.FencingToken}, nil
		},
		"notification": func(ctx context.Context, task *Task) (map[string]any, error) {
			return map[string]any{"pool": task.SessionID == "", "by": "go"}, nil
		},
		"contact_create": func(ctx context.Context, task *Task) (map[string]any, error) {
			var in map[string]any
			if err := task.DecodePayload(&in); err != nil {
				return nil, err
			}
			return map[string]any{"email": in["email"], "by": "go", "batch": task.BatchID}, nil
		},
	}
	sessions := []SessionSpec{{SessionID: "go-session-" + run, ClientID: clientID, AgentID: "go-agent",
		MaxConcurrent: 2, Capabilities: []string{"go"}}}
	if pyClient != "" {
		sessions = append(sessions, SessionSpec{SessionID: "go-py-session-" + run, ClientID: pyClient, AgentID: "go-agent"})
	}
	executor, err := NewExecutor(ctx, handlers, 4, WithConfig(cfg), WithSessions(sessions...),
		WithHeartbeatInterval(time.Second), WithPool())
	if err != nil {
		t.Fatal(err)
	}
	seen := &progressSeen{status: map[string][]TaskStatus{}}
	executor.SetProgressCallback(seen.record)
	if err := executor.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = executor.Shutdown(5 * time.Second)
		}
	}()

	client, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	outcomes, err := client.Outcomes("go-e2e-" + run)
	if err != nil {
		t.Fatal(err)
	}
	defer outcomes.Close(true)

	submit := func(operation string, payload any, opts ...SubmitOption) string {
		t.Helper()
		id, err := client.Submit(ctx, clientID, operation, payload, opts...)
		if err != nil {
			t.Fatalf("submit %s: %v", operation, err)
		}
		return id
	}
	// Every SubmitTask field, and a dependency on it.
	first := submit("workflow_trigger", map[string]any{"step": 1},
		WithTaskID("first-"+run), WithPriority(2), WithMaxRetries(1), WithTimeout(30*time.Second),
		WithScheduledFor(time.Now().Add(time.Second)), WithCapabilities("go"))
	second := submit("workflow_trigger", nil, WithDependsOn(first))
	// Review: one approved (and expedited while it waits), one rejected.
	approved := submit("workflow_trigger", nil, WithReview())
	rejected := submit("workflow_trigger", nil, WithReview())
	mustSend := func(_ Sent, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mustSend(client.Expedite(ctx, clientID, approved))
	mustSend(client.Approve(ctx, clientID, approved, "go-reviewer"))
	mustSend(client.Reject(ctx, clientID, rejected, "go-reviewer", "not today"))
	// A handler error fails the task for good (no retries).
	failing := submit("workflow_trigger", map[string]any{"fail": "no such workflow"}, WithMaxRetries(0))
	// Cancelled while its handler runs.
	blocking := submit("workflow_trigger", map[string]any{"block": true}, WithMaxRetries(0))
	// Work that needs no session goes to the pool.
	pooled := submit("notification", map[string]any{"to": "+15550100", "recipient": "owner", "message": "hello"})
	// A batch job of a batchable operation: its children run as batch assignments.
	jobID, err := client.SubmitBatchJob(ctx, clientID, "contact_create", []BatchItem{
		{TaskID: "child-a-" + run, Payload: map[string]any{"email": "a@example.com"}},
		{TaskID: "child-b-" + run, Payload: map[string]any{"email": "b@example.com"}},
		{TaskID: "child-c-" + run, Payload: map[string]any{"email": "c@example.com"}},
	}, BatchJobOptions{Parallelism: 3})
	if err != nil || jobID == "" {
		t.Fatalf("batch job: %q %v", jobID, err)
	}
	select {
	case <-blocked:
	case <-ctx.Done():
		t.Fatal("the blocking task never started")
	}
	mustSend(client.Cancel(ctx, clientID, blocking, "changed my mind"))
	select {
	case cause := <-sawCancel:
		if cause == nil || cause.Error() != ErrorCancelled {
			t.Errorf("the handler's context ended with %v, want the cancel", cause)
		}
	case <-ctx.Done():
		t.Fatal("the cancel never reached the handler")
	}

	want := map[string]string{
		first: "completed", second: "completed", approved: "completed", rejected: "rejected",
		failing: "failed", blocking: "cancelled", pooled: "completed",
		"child-a-" + run: "completed", "child-b-" + run: "completed", "child-c-" + run: "completed",
	}
	if pyTask != "" {
		want[pyTask] = "completed"
	}
	got := map[string]Outcome{}
	for len(got) < len(want) {
		o, err := outcomes.Next(ctx)
		if err != nil {
			t.Fatalf("outcomes so far %v: %v", kinds(got), err)
		}
		if _, mine := want[o.TaskID()]; mine {
			got[o.TaskID()] = o
		}
	}
	for id, kind := range want {
		if got[id].Kind() != kind {
			t.Errorf("task %s ended %s, want %s (%+v %+v)", id, got[id].Kind(), kind, got[id].Completed, got[id].Failed)
		}
	}
	if c := got[first].Completed; c != nil {
		if c.SessionID == nil || *c.SessionID != sessions[0].SessionID || c.Attempt != 1 {
			t.Errorf("first ran on %v attempt %d", c.SessionID, c.Attempt)
		}
		var out map[string]any
		if err := json.Unmarshal([]byte(c.Output), &out); err != nil || out["by"] != "go" || out["ran"] != first {
			t.Errorf("first's output %s", c.Output)
		}
	}
	if c := got[pooled].Completed; c != nil && (c.SessionID != nil || c.Output != `{"by":"go","pool":true}`) {
		t.Errorf("pool task %+v", c)
	}
	if f := got[failing].Failed; f != nil && f.Error != "no such workflow" {
		t.Errorf("failing's error %q", f.Error)
	}
	if f := got[rejected].Failed; f != nil && f.Reason != "not today" {
		t.Errorf("rejected's reason %q", f.Reason)
	}
	for _, child := range []string{"child-a-", "child-b-", "child-c-"} {
		if c := got[child+run].Completed; c != nil && !strings.Contains(c.Output, `"by":"go"`) {
			t.Errorf("%s output %s", child, c.Output)
		}
	}
	if pyTask != "" {
		if c := got[pyTask].Completed; c != nil && (!strings.Contains(c.Output, `"by":"go"`) || c.ClientID != pyClient) {
			t.Errorf("the Python-submitted task's outcome %+v", c)
		}
	}
	if !seen.saw(first, StatusRunning) || !seen.saw(first, StatusCompleted) || !seen.saw(failing, StatusFailed) ||
		!seen.saw(blocking, StatusCancelled) {
		t.Errorf("progress callback saw %v", seen.status)
	}
	m := executor.GetMetrics()
	if m.CancelledTasks != 1 || m.FailedTasks != 1 || m.CompletedTasks < 7 || m.RunningTasks != 0 {
		t.Errorf("metrics %+v", m)
	}
	var errs []TaskError
	for _, e := range executor.GetErrors() {
		if e.TaskID != "" { // broker hiccups are listed too, without a task
			errs = append(errs, e)
		}
	}
	if len(errs) != 1 || errs[0].TaskID != failing || errs[0].Error.Error() != "no such workflow" {
		t.Errorf("errors %+v", errs)
	}
	stopped = true
	if err := executor.Shutdown(10 * time.Second); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func kinds(got map[string]Outcome) map[string]string {
	out := map[string]string{}
	for id, o := range got {
		out[id] = o.Kind()
	}
	return out
}
