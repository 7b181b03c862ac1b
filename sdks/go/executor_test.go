package taskstream

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The executor's pool without Kafka: commands go to a sink, assignments are fed as records.

type sent struct {
	cmd       Command
	partition int32
}

type sinkLog struct {
	mu      sync.Mutex
	cmds    []sent
	results chan *ReportResult
}

func (s *sinkLog) add(cmd Command, partition int32) error {
	s.mu.Lock()
	s.cmds = append(s.cmds, sent{cmd, partition})
	s.mu.Unlock()
	if r, ok := cmd.(*ReportResult); ok {
		s.results <- r
	}
	return nil
}

func (s *sinkLog) all() []sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sent(nil), s.cmds...)
}

func (s *sinkLog) result(t *testing.T) *ReportResult {
	t.Helper()
	select {
	case r := <-s.results:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no result reported")
		return nil
	}
}

func localExecutor(t *testing.T, ctx context.Context, handlers Handlers, workers int, sessions ...SessionSpec) (*Executor, *sinkLog) {
	t.Helper()
	e, err := NewExecutor(ctx, handlers, workers, WithSessions(sessions...), WithConfig(Config{}))
	if err != nil {
		t.Fatal(err)
	}
	log := &sinkLog{results: make(chan *ReportResult, 100)}
	e.sink, e.partitions, e.started = log.add, 4, true
	e.startWorkers()
	t.Cleanup(func() { _ = e.Shutdown(5 * time.Second) })
	return e, log
}

func feed(t *testing.T, e *Executor, a *Assignment, home string) {
	t.Helper()
	value, err := DefaultCodec().Encode(a)
	if err != nil {
		t.Fatal(err)
	}
	rec := &kgo.Record{Value: value}
	if home != "" {
		rec.Headers = []kgo.RecordHeader{{Key: "ts-home", Value: []byte(home)}}
	}
	e.onAssignment(rec)
}

var s1 = SessionSpec{SessionID: "s1", ClientID: "acme", AgentID: "a1", MaxConcurrent: 2}

func taskAssignment(taskID string, token int64, payload string) *Assignment {
	return &Assignment{Kind: "task", ClientID: "acme", SessionID: ptr("s1"), Operation: "op",
		TaskID: ptr(taskID), Attempt: 1, FencingToken: token,
		DeadlineAtMs: time.Now().Add(time.Minute).UnixMilli(), TimeoutMs: 60000, Priority: 3,
		Items: []AssignmentItem{{TaskID: taskID, Payload: payload}}}
}

func TestResultCarriesTheFencingTokenToTheHomeHeader(t *testing.T) {
	handlers := Handlers{"op": func(ctx context.Context, task *Task) (map[string]any, error) {
		var in map[string]any
		_ = task.DecodePayload(&in)
		task.ReportProgress(0.25, "quarter")
		return map[string]any{"echo": in["x"]}, nil
	}}
	e, log := localExecutor(t, context.Background(), handlers, 2, s1)
	feed(t, e, taskAssignment("t1", 41, `{"x":"y"}`), "3")
	r := log.result(t)
	if r.TaskID == nil || *r.TaskID != "t1" || r.FencingToken != 41 || !r.Success || r.Output != `{"echo":"y"}` ||
		r.SessionID == nil || *r.SessionID != "s1" {
		t.Errorf("result %+v", r)
	}
	var order []string
	for _, c := range log.all() {
		order = append(order, c.cmd.RecordName())
		if c.partition != 3 {
			t.Errorf("%s went to partition %d, not the ts-home 3", c.cmd.RecordName(), c.partition)
		}
		if p, ok := c.cmd.(*ReportProgress); ok && (p.FencingToken != 41 || p.Progress != 0.25 || *p.Message != "quarter") {
			t.Errorf("progress %+v", p)
		}
	}
	if len(order) != 3 || order[0] != "TaskStarted" || order[1] != "ReportProgress" || order[2] != "ReportResult" {
		t.Errorf("commands in order %v", order)
	}
	// Without ts-home the result goes to the client's home partition.
	feed(t, e, taskAssignment("t2", 42, `{}`), "")
	log.result(t)
	cmds := log.all()
	if last := cmds[len(cmds)-1]; last.partition != HomePartition("acme", 4) {
		t.Errorf("result without ts-home went to %d", last.partition)
	}
	if m := e.GetMetrics(); m.CompletedTasks != 2 || m.TotalTasks != 2 {
		t.Errorf("metrics %+v", m)
	}
}

func TestOtherSessionsAndUnknownKindsAreSkipped(t *testing.T) {
	ran := make(chan string, 10)
	handlers := Handlers{"op": func(ctx context.Context, task *Task) (map[string]any, error) {
		ran <- task.ID
		return nil, nil
	}}
	e, log := localExecutor(t, context.Background(), handlers, 1, s1)
	other := taskAssignment("theirs", 1, `{}`)
	other.SessionID = ptr("someone-else")
	feed(t, e, other, "")
	future := taskAssignment("future", 2, `{}`)
	future.Kind = "teleport"
	feed(t, e, future, "")
	feed(t, e, taskAssignment("mine", 3, `{}`), "")
	if r := log.result(t); *r.TaskID != "mine" {
		t.Errorf("ran %s", *r.TaskID)
	}
	if got := <-ran; got != "mine" {
		t.Errorf("handler ran %s", got)
	}
	if m := e.GetMetrics(); m.TotalTasks != 1 {
		t.Errorf("took %d tasks, want 1", m.TotalTasks)
	}
}

func TestSessionConcurrencyBoundsHandlerCallsBatchItemsIncluded(t *testing.T) {
	var mu sync.Mutex
	running, most := 0, 0
	handlers := Handlers{"op": func(ctx context.Context, task *Task) (map[string]any, error) {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond) // overlap, so a broken bound would show
		mu.Lock()
		running--
		mu.Unlock()
		if task.ID == "b3" {
			return nil, errors.New("item three broke")
		}
		return map[string]any{"id": task.ID}, nil
	}}
	e, log := localExecutor(t, context.Background(), handlers, 4, s1)
	batch := &Assignment{Kind: "batch", ClientID: "acme", SessionID: ptr("s1"), Operation: "op",
		BatchID: ptr("batch-1"), Attempt: 1, FencingToken: 9, DeadlineAtMs: time.Now().Add(time.Minute).UnixMilli(),
		TimeoutMs: 60000, Priority: 4}
	for _, id := range []string{"b1", "b2", "b3", "b4", "b5", "b6"} {
		batch.Items = append(batch.Items, AssignmentItem{TaskID: id, Payload: "{}"})
	}
	feed(t, e, batch, "1")
	feed(t, e, taskAssignment("t1", 10, `{}`), "1")
	feed(t, e, taskAssignment("t2", 11, `{}`), "1")
	var br *ReportResult
	for i := 0; i < 3; i++ {
		if r := log.result(t); r.BatchID != nil {
			br = r
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if most > 2 {
		t.Errorf("%d handler calls ran at once in a session of max_concurrent 2", most)
	}
	if br == nil || *br.BatchID != "batch-1" || br.TaskID != nil || br.FencingToken != 9 || br.Success ||
		len(br.Items) != 6 || br.Error == nil || *br.Error != "1 of 6 items failed" {
		t.Fatalf("batch result %+v", br)
	}
	for _, it := range br.Items {
		if it.TaskID == "b3" {
			if it.Success || it.Error == nil || *it.Error != "item three broke" {
				t.Errorf("item b3 %+v", it)
			}
		} else if !it.Success || it.Output != `{"id":"`+it.TaskID+`"}` {
			t.Errorf("item %+v", it)
		}
	}
	if errs := e.GetErrors(); len(errs) != 1 || errs[0].TaskID != "b3" {
		t.Errorf("errors %+v", errs)
	}
}

func TestTimeoutEndsTheHandlerContextAndFailsTheTask(t *testing.T) {
	cause := make(chan error, 1)
	handlers := Handlers{"op": func(ctx context.Context, task *Task) (map[string]any, error) {
		<-ctx.Done()
		cause <- ctx.Err()
		return map[string]any{"late": true}, nil
	}}
	e, log := localExecutor(t, context.Background(), handlers, 1, s1)
	a := taskAssignment("slow", 5, `{}`)
	a.TimeoutMs = 50
	feed(t, e, a, "")
	r := log.result(t)
	if r.Success || r.Error == nil || *r.Error != ErrorTimeout || r.FencingToken != 5 {
		t.Errorf("result %+v", r)
	}
	if err := <-cause; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("handler context ended with %v", err)
	}
	if m := e.GetMetrics(); m.TimedOutTasks != 1 || m.FailedTasks != 1 {
		t.Errorf("metrics %+v", m)
	}
}

func TestCancelAssignmentReachesTheHandlerAndReportsNothing(t *testing.T) {
	started := make(chan struct{}, 1)
	cause := make(chan error, 1)
	handlers := Handlers{"op": func(ctx context.Context, task *Task) (map[string]any, error) {
		if task.ID == "long" {
			started <- struct{}{}
			<-ctx.Done()
			cause <- context.Cause(ctx)
			return nil, ctx.Err()
		}
		return nil, nil
	}}
	e, log := localExecutor(t, context.Background(), handlers, 1, s1)
	var statuses []TaskStatus
	var mu sync.Mutex
	e.SetProgressCallback(func(taskID string, status TaskStatus, _ int, _ string) {
		if taskID == "long" {
			mu.Lock()
			statuses = append(statuses, status)
			mu.Unlock()
		}
	})
	feed(t, e, taskAssignment("long", 7, `{}`), "")
	feed(t, e, taskAssignment("queued", 8, `{}`), "") // one worker: waits behind "long"
	<-started
	feed(t, e, &Assignment{Kind: "cancel", ClientID: "acme", SessionID: ptr("s1"), Operation: "op",
		TaskID: ptr("queued"), FencingToken: 8, Items: []AssignmentItem{}}, "")
	feed(t, e, &Assignment{Kind: "cancel", ClientID: "acme", SessionID: ptr("s1"), Operation: "op",
		TaskID: ptr("long"), FencingToken: 7, Items: []AssignmentItem{}, Reason: ptr("customer left")}, "")
	if err := <-cause; err == nil || err.Error() != ErrorCancelled {
		t.Errorf("handler context ended with %v", err)
	}
	// A task after them still runs, and it is the only result.
	feed(t, e, taskAssignment("after", 9, `{}`), "")
	if r := log.result(t); *r.TaskID != "after" {
		t.Errorf("a result for cancelled %s", *r.TaskID)
	}
	for _, c := range log.all() {
		if s, ok := c.cmd.(*TaskStarted); ok && s.TaskID == "queued" {
			t.Error("the cancelled queued task started")
		}
	}
	if m := e.GetMetrics(); m.CancelledTasks != 2 || m.CompletedTasks != 1 {
		t.Errorf("metrics %+v", m)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(statuses) != 2 || statuses[0] != StatusRunning || statuses[1] != StatusCancelled {
		t.Errorf("statuses of long %v", statuses)
	}
}

func TestCancellingTheExecutorContextReachesTheHandler(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{}, 1)
	ended := make(chan error, 1)
	handlers := Handlers{"op": func(ctx context.Context, task *Task) (map[string]any, error) {
		started <- struct{}{}
		<-ctx.Done()
		ended <- ctx.Err()
		return nil, ctx.Err()
	}}
	e, log := localExecutor(t, ctx, handlers, 1, s1)
	feed(t, e, taskAssignment("running", 3, `{}`), "")
	<-started
	cancel()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("handler context ended with %v", err)
	}
	if r := log.result(t); r.Success || *r.Error != ErrorShutdown || r.FencingToken != 3 {
		t.Errorf("result %+v", r)
	}
	_ = e.Shutdown(time.Second) // returns what the stop the cancel began returned
	released := false
	for _, c := range log.all() {
		if rs, ok := c.cmd.(*ReleaseSession); ok && rs.SessionID == "s1" {
			released = true
		}
	}
	if !released {
		t.Error("the session was not released")
	}
}

func TestShutdownReportsWorkThatOutlivesTheDrain(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	handlers := Handlers{"op": func(ctx context.Context, task *Task) (map[string]any, error) {
		started <- struct{}{}
		<-release // ignores its context
		return nil, nil
	}}
	defer close(release)
	e, log := localExecutor(t, context.Background(), handlers, 1, s1)
	feed(t, e, taskAssignment("stuck", 4, `{}`), "")
	<-started
	if err := e.Shutdown(50 * time.Millisecond); err == nil {
		t.Error("Shutdown returned no error though work outlived the drain")
	}
	if r := log.result(t); r.Success || *r.Error != ErrorShutdown {
		t.Errorf("result %+v", r)
	}
	feed(t, e, taskAssignment("late", 5, `{}`), "")
	if m := e.GetMetrics(); m.TotalTasks != 1 {
		t.Errorf("took work after shutdown: %+v", m)
	}
}

func TestHigherPriorityRunsFirst(t *testing.T) {
	gate := make(chan struct{})
	var mu sync.Mutex
	var order []string
	handlers := Handlers{"op": func(ctx context.Context, task *Task) (map[string]any, error) {
		if task.ID == "gate" {
			<-gate
		}
		mu.Lock()
		order = append(order, task.ID)
		mu.Unlock()
		return nil, nil
	}}
	e, log := localExecutor(t, context.Background(), handlers, 1, s1)
	feed(t, e, taskAssignment("gate", 1, `{}`), "")
	for e.GetMetrics().RunningTasks == 0 {
		time.Sleep(time.Millisecond)
	}
	low := taskAssignment("low", 2, `{}`)
	low.Priority = 5
	high := taskAssignment("high", 3, `{}`)
	high.Priority = 1
	feed(t, e, low, "")
	feed(t, e, high, "")
	close(gate)
	for i := 0; i < 3; i++ {
		log.result(t)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(order) != 3 || order[1] != "high" || order[2] != "low" {
		t.Errorf("ran in order %v", order)
	}
}
