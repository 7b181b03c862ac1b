package taskstream

import (
	"context"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Folding a TaskStarted into its ReportResult (startfold.go), first on the park alone, then
// through the executor with its commands going to a sink.

type producedStarts struct {
	mu   sync.Mutex
	cmds []string // task ids, in the order produced
}

func (p *producedStarts) produce(cmd *TaskStarted, _ int32) {
	p.mu.Lock()
	p.cmds = append(p.cmds, cmd.TaskID)
	p.mu.Unlock()
}

func (p *producedStarts) all() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string{}, p.cmds...)
}

func started(task string, token int64) *TaskStarted {
	return &TaskStarted{ClientID: "acme", TaskID: task, FencingToken: token}
}

func taskResult(task string, token int64) *ReportResult {
	return &ReportResult{ClientID: "acme", TaskID: ptr(task), FencingToken: token, Success: true,
		Output: "{}", Items: []ItemResult{}}
}

func (h *startHold) setWait(d time.Duration) {
	h.mu.Lock()
	h.wait = d
	h.mu.Unlock()
}

func TestStartHoldFoldsAStartIntoTheResultOfItsAttemptOnly(t *testing.T) {
	var out producedStarts
	h := newStartHold(time.Hour, out.produce)
	h.park(started("t1", 1), 0)
	h.park(started("t2", 1), 0)
	h.park(started("t3", 1), 0)
	if h.pending() != 3 {
		t.Fatalf("%d parked, want 3", h.pending())
	}
	r := taskResult("t2", 1)
	if folded := h.fold(r); len(folded) != 1 || !r.Started {
		t.Errorf("t2's result did not fold its start: %+v", r)
	}
	// Another token, another client: another attempt.
	for _, other := range []*ReportResult{taskResult("t1", 2), {ClientID: "other", TaskID: ptr("t3"), FencingToken: 1}} {
		if h.fold(other); other.Started {
			t.Errorf("%+v folded a start of another attempt", other)
		}
	}
	if got := out.all(); len(got) != 0 || h.pending() != 2 {
		t.Errorf("produced %v, %d parked", got, h.pending())
	}
	h.close()
	if got := out.all(); !reflect.DeepEqual(got, []string{"t1", "t3"}) || h.pending() != 0 {
		t.Errorf("close produced %v (in park order?), %d still parked", got, h.pending())
	}
	h.park(started("t4", 1), 0) // closed: at once
	if got := out.all(); len(got) != 3 || got[2] != "t4" {
		t.Errorf("a start parked after close: %v", got)
	}
}

func TestStartHoldProducesAStartAloneOnceItsTimeIsUp(t *testing.T) {
	var out producedStarts
	h := newStartHold(10*time.Millisecond, out.produce)
	h.park(started("t1", 1), 0)
	deadline := time.Now().Add(5 * time.Second)
	for h.pending() != 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if got := out.all(); !reflect.DeepEqual(got, []string{"t1"}) {
		t.Fatalf("produced %v after the hold", got)
	}
	// The result after that goes as it is: its start went before it.
	r := taskResult("t1", 1)
	if h.fold(r); r.Started {
		t.Error("a result folded a start that was already sent")
	}
}

func TestStartHoldFoldsTheItemsABatchResultNames(t *testing.T) {
	var out producedStarts
	h := newStartHold(time.Hour, out.produce)
	h.park(started("i0", 7), 0)
	h.park(started("other", 7), 0)
	batch := &ReportResult{ClientID: "acme", BatchID: ptr("b1"), FencingToken: 7, Success: true, Output: "{}",
		Items: []ItemResult{{TaskID: "i0", Success: true, Output: "{}"}, {TaskID: "i1", Success: true, Output: "{}"}}}
	if folded := h.fold(batch); len(folded) != 1 || !batch.Items[0].Started || batch.Items[1].Started || batch.Started {
		t.Errorf("batch after folding %+v", batch)
	}
	// A batch-level report names no items: every parked start goes out in front of it.
	whole := &ReportResult{ClientID: "acme", BatchID: ptr("b2"), FencingToken: 7, Success: true, Output: "{}"}
	if h.fold(whole); whole.Started || h.pending() != 0 || !reflect.DeepEqual(out.all(), []string{"other"}) {
		t.Errorf("a batch-level result: %+v, produced %v, %d parked", whole, out.all(), h.pending())
	}
}

func TestAFoldedResultRoundTripsThroughTheCodec(t *testing.T) {
	r := taskResult("t1", 3)
	r.Started = true
	batch := &ReportResult{ClientID: "acme", BatchID: ptr("b1"), FencingToken: 7, Success: true, Output: "{}",
		Items: []ItemResult{{TaskID: "i0", Success: true, Output: "{}", Started: true}, {TaskID: "i1", Success: true, Output: "{}"}}}
	for _, want := range []*ReportResult{r, batch} {
		value, err := DefaultCodec().Encode(want)
		if err != nil {
			t.Fatal(err)
		}
		var got ReportResult
		if _, err := DefaultCodec().DecodeInto(value, &got); err != nil {
			t.Fatal(err)
		}
		if got.Started != want.Started || len(got.Items) != len(want.Items) {
			t.Errorf("decoded %+v, want %+v", got, want)
		}
		for i := range got.Items {
			if got.Items[i].Started != want.Items[i].Started {
				t.Errorf("item %d decoded %+v, want %+v", i, got.Items[i], want.Items[i])
			}
		}
	}
}

// names lists the record names the sink saw for taskID (a batch result counts for its items).
func names(log *sinkLog, taskID string) []string {
	var out []string
	for _, c := range log.all() {
		switch cmd := c.cmd.(type) {
		case *TaskStarted:
			if cmd.TaskID == taskID {
				out = append(out, "TaskStarted")
			}
		case *ReportProgress:
			if cmd.TaskID == taskID {
				out = append(out, "ReportProgress")
			}
		case *ReportResult:
			if cmd.TaskID != nil && *cmd.TaskID == taskID {
				out = append(out, "ReportResult")
			}
			for _, it := range cmd.Items {
				if it.TaskID == taskID {
					out = append(out, "ReportResult")
				}
			}
		}
	}
	return out
}

func sawStart(log *sinkLog, taskID string) bool {
	for _, n := range names(log, taskID) {
		if n == "TaskStarted" {
			return true
		}
	}
	return false
}

// waitForStart blocks until the sink saw taskID's TaskStarted (it was parked and went alone).
func waitForStart(ctx context.Context, log *sinkLog, taskID string) {
	for !sawStart(log, taskID) && ctx.Err() == nil {
		time.Sleep(2 * time.Millisecond)
	}
}

func TestAQuickTaskSendsOneCommandItsResultCarryingTheStart(t *testing.T) {
	handlers := Handlers{"op": func(ctx context.Context, task *Task) (map[string]any, error) {
		return map[string]any{"ok": true}, nil
	}}
	e, log := localExecutor(t, context.Background(), handlers, 1, s1)
	e.starts.setWait(time.Minute) // however slow the machine, the result comes within it
	feed(t, e, taskAssignment("quick", 5, `{}`), "2")
	r := log.result(t)
	if !r.Started || *r.TaskID != "quick" || r.FencingToken != 5 || !r.Success {
		t.Errorf("result %+v", r)
	}
	if got := names(log, "quick"); !reflect.DeepEqual(got, []string{"ReportResult"}) {
		t.Errorf("commands of the quick task %v, want the result alone", got)
	}
	if e.starts.pending() != 0 {
		t.Errorf("%d starts still parked", e.starts.pending())
	}
}

func TestAStartGoesAloneAfterTheHoldAndTheResultThenCarriesNone(t *testing.T) {
	var log *sinkLog
	handlers := Handlers{"op": func(ctx context.Context, task *Task) (map[string]any, error) {
		waitForStart(ctx, log, task.ID) // runs past the 20 ms hold
		return nil, nil
	}}
	e, l := localExecutor(t, context.Background(), handlers, 1, s1)
	log = l
	feed(t, e, taskAssignment("slow", 6, `{}`), "1")
	r := log.result(t)
	if r.Started {
		t.Errorf("the result carries a start that went alone: %+v", r)
	}
	if got := names(log, "slow"); !reflect.DeepEqual(got, []string{"TaskStarted", "ReportResult"}) {
		t.Errorf("commands of the slow task %v", got)
	}
	for _, c := range log.all() {
		if c.partition != 1 {
			t.Errorf("%s went to partition %d, not the ts-home 1", c.cmd.RecordName(), c.partition)
		}
	}
}

func TestProgressKeepsItsStartInFront(t *testing.T) {
	handlers := Handlers{"op": func(ctx context.Context, task *Task) (map[string]any, error) {
		task.ReportProgress(0.5, "half")
		return nil, nil
	}}
	e, log := localExecutor(t, context.Background(), handlers, 1, s1)
	e.starts.setWait(time.Minute)
	feed(t, e, taskAssignment("p", 2, `{}`), "")
	r := log.result(t)
	if r.Started {
		t.Errorf("the result carries a start that went before its progress: %+v", r)
	}
	if got := names(log, "p"); !reflect.DeepEqual(got, []string{"TaskStarted", "ReportProgress", "ReportResult"}) {
		t.Errorf("commands %v", got)
	}
}

func TestABatchResultCarriesTheStartsOfItsItemsStillParked(t *testing.T) {
	// One handler call at a time: the first item waits until its start went alone, the
	// second starts after it and its start is still parked when the batch's result goes.
	var calls atomic.Int32
	var log *sinkLog
	handlers := Handlers{"op": func(ctx context.Context, task *Task) (map[string]any, error) {
		if calls.Add(1) == 1 {
			waitForStart(ctx, log, task.ID)
		}
		return nil, nil
	}}
	one := SessionSpec{SessionID: "s1", ClientID: "acme", AgentID: "a1", MaxConcurrent: 1}
	e, l := localExecutor(t, context.Background(), handlers, 1, one)
	log = l
	e.starts.setWait(300 * time.Millisecond)
	batch := &Assignment{Kind: "batch", ClientID: "acme", SessionID: ptr("s1"), Operation: "op",
		BatchID: ptr("batch-1"), Attempt: 1, FencingToken: 9, DeadlineAtMs: time.Now().Add(time.Minute).UnixMilli(),
		TimeoutMs: 60000, Priority: 3,
		Items: []AssignmentItem{{TaskID: "b1", Payload: "{}"}, {TaskID: "b2", Payload: "{}"}}}
	feed(t, e, batch, "")
	r := log.result(t)
	if r.Started || len(r.Items) != 2 {
		t.Fatalf("batch result %+v", r)
	}
	folded := 0
	for _, it := range r.Items {
		alone := sawStart(log, it.TaskID)
		if it.Started == alone {
			t.Errorf("item %s: started in the result %v, TaskStarted sent %v (one of them, not both)",
				it.TaskID, it.Started, alone)
		}
		if it.Started {
			folded++
		}
	}
	if folded != 1 {
		t.Errorf("%d items folded, want the second one: %+v", folded, r.Items)
	}

	// Items that all finish at once: their starts all travel in the result.
	e.starts.setWait(time.Minute)
	calls.Store(10)
	batch.BatchID, batch.FencingToken = ptr("batch-2"), 10
	batch.Items = []AssignmentItem{{TaskID: "c1", Payload: "{}"}, {TaskID: "c2", Payload: "{}"}}
	feed(t, e, batch, "")
	r = log.result(t)
	for _, it := range r.Items {
		if !it.Started || sawStart(log, it.TaskID) {
			t.Errorf("item %+v of a quick batch", it)
		}
	}
}

func TestShutdownSendsTheStartsStillParked(t *testing.T) {
	running := make(chan struct{}, 1)
	handlers := Handlers{"op": func(ctx context.Context, task *Task) (map[string]any, error) {
		running <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	e, log := localExecutor(t, context.Background(), handlers, 1, s1)
	e.starts.setWait(time.Hour)
	feed(t, e, taskAssignment("long", 7, `{}`), "")
	<-running
	// Cancelled: no result comes to carry its start.
	feed(t, e, &Assignment{Kind: "cancel", ClientID: "acme", SessionID: ptr("s1"), Operation: "op",
		TaskID: ptr("long"), FencingToken: 7, Items: []AssignmentItem{}}, "")
	for e.GetMetrics().CancelledTasks != 1 {
		time.Sleep(time.Millisecond)
	}
	if e.starts.pending() != 1 || sawStart(log, "long") {
		t.Fatalf("%d parked, start sent %v: the start should still be parked", e.starts.pending(), sawStart(log, "long"))
	}
	if err := e.Shutdown(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if e.starts.pending() != 0 {
		t.Errorf("%d starts parked after shutdown", e.starts.pending())
	}
	var order []string
	for _, c := range log.all() {
		order = append(order, c.cmd.RecordName())
	}
	if !reflect.DeepEqual(order, []string{"TaskStarted", "ReleaseSession"}) {
		t.Errorf("commands %v, want the start before the release", order)
	}
}

func TestARegistrationSendsTheParkedStartsFirst(t *testing.T) {
	e, log := localExecutor(t, context.Background(), Handlers{}, 1, s1)
	e.starts.setWait(time.Hour)
	e.sendAsync(started("t1", 1), -1)
	e.sendAsync(&SessionHeartbeat{ClientID: "acme", SessionID: "s1"}, -1) // neutral: folds across
	if e.starts.pending() != 1 {
		t.Fatal("a heartbeat sent the parked start")
	}
	if _, err := e.send(context.Background(), &RegisterSession{ClientID: "acme", SessionID: "s2", AgentID: "a",
		MaxConcurrent: 1, Capabilities: []string{}}, -1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.send(context.Background(), taskResult("t1", 1), -1); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, c := range log.all() {
		order = append(order, c.cmd.RecordName())
	}
	if !reflect.DeepEqual(order, []string{"SessionHeartbeat", "TaskStarted", "RegisterSession", "ReportResult"}) {
		t.Errorf("commands %v", order)
	}
	if r := log.result(t); r.Started {
		t.Error("a result folded a start across a registration")
	}
}
