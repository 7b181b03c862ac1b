package taskstream

import (
	"context"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestPoolCommitsOnlyBelowTheLowestUnfinishedOffset(t *testing.T) {
	tr := newOffsetTracker()
	for _, o := range []int64{10, 11, 12} {
		tr.seen(0, o)
	}
	tr.seen(1, 5)
	tr.done(0, 11)
	tr.done(1, 5)
	if got := tr.committable(nil); !reflect.DeepEqual(got, map[int32]int64{0: 10, 1: 6}) {
		t.Errorf("committable %v", got)
	}
	tr.markCommitted(map[int32]int64{0: 10, 1: 6})
	if got := tr.committable(nil); len(got) != 0 {
		t.Errorf("committed offsets offered again: %v", got)
	}
	tr.done(0, 10)
	if got := tr.committable([]int32{0}); !reflect.DeepEqual(got, map[int32]int64{0: 12}) {
		t.Errorf("after 10 finished: %v", got)
	}
	tr.done(0, 12)
	if got := tr.committable([]int32{0}); !reflect.DeepEqual(got, map[int32]int64{0: 13}) {
		t.Errorf("after all finished: %v", got)
	}
	tr.forget([]int32{0})
	if got := tr.committable(nil); len(got) != 0 || tr.inFlight() != 0 {
		t.Errorf("a forgotten partition is still tracked: %v", got)
	}
}

func TestPoolWorkIsDoneOnlyOnceItsResultIsSent(t *testing.T) {
	handlers := Handlers{"notify": func(ctx context.Context, task *Task) (map[string]any, error) {
		return map[string]any{"ok": true}, nil
	}}
	e, err := NewExecutor(context.Background(), handlers, 2, WithPool(), WithConfig(Config{}))
	if err != nil {
		t.Fatal(err)
	}
	log := &sinkLog{results: make(chan *ReportResult, 10)}
	e.sink, e.partitions, e.started = log.add, 4, true
	e.startWorkers()
	defer func() { _ = e.Shutdown(0) }()
	a := &Assignment{Kind: "task", ClientID: "acme", Operation: "notify", TaskID: ptr("p1"), Attempt: 1,
		FencingToken: 3, TimeoutMs: 60000, Priority: 2, Items: []AssignmentItem{{TaskID: "p1", Payload: "{}"}}}
	value, _ := DefaultCodec().Encode(a)
	rec := &kgo.Record{Partition: 2, Offset: 40, Value: value}
	e.tracker.seen(rec.Partition, rec.Offset)
	if !e.onPoolRecord(rec) {
		t.Fatal("pool work not taken")
	}
	r := log.result(t)
	if r.SessionID != nil || r.FencingToken != 3 || !r.Success {
		t.Errorf("pool result %+v", r)
	}
	// The result is sent before the offset counts as done (finish marks it after sending).
	for e.tracker.inFlight() != 0 {
		<-e.poolFreed
	}
	if got := e.tracker.committable(nil); got[2] != 41 {
		t.Errorf("committable %v", got)
	}
	cancel := &Assignment{Kind: "cancel", ClientID: "acme", Operation: "notify", TaskID: ptr("p9"),
		FencingToken: 4, Items: []AssignmentItem{}}
	value, _ = DefaultCodec().Encode(cancel)
	if e.onPoolRecord(&kgo.Record{Partition: 2, Offset: 41, Value: value}) {
		t.Error("a cancel was queued as work")
	}
}
