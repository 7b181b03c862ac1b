package taskstream

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The shared pool: task.pool in consumer group <prefix>-pool, from the committed offsets
// (the start for a new group). An offset is committed only once the results of it and of
// every record before it on its partition are delivered (at least once: a member that dies
// mid-task leaves its work to the next owner of the partition). Pool work runs at most
// `workers` handler calls at once; pool assignments have session_id null.

// WithPool also serves the shared pool (operations that need no session).
func WithPool() ExecutorOption { return func(o *executorOptions) { o.pool = true } }

// offsetTracker: per partition, the offsets handed to the workers and not finished yet, and
// the next offset. A partition's committable offset is its lowest unfinished offset, or the
// one after the last seen when nothing is in flight.
type offsetTracker struct {
	mu        sync.Mutex
	pending   map[int32]map[int64]bool
	next      map[int32]int64
	committed map[int32]int64
}

func newOffsetTracker() *offsetTracker {
	return &offsetTracker{pending: map[int32]map[int64]bool{}, next: map[int32]int64{}, committed: map[int32]int64{}}
}

func (t *offsetTracker) seen(p int32, offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending[p] == nil {
		t.pending[p] = map[int64]bool{}
	}
	t.pending[p][offset] = true
	t.next[p] = max(t.next[p], offset+1)
}

func (t *offsetTracker) done(p int32, offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.pending[p], offset)
}

func (t *offsetTracker) inFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, offsets := range t.pending {
		n += len(offsets)
	}
	return n
}

// committable lists what may be committed for partitions (all when nil).
func (t *offsetTracker) committable(partitions []int32) map[int32]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if partitions == nil {
		for p := range t.next {
			partitions = append(partitions, p)
		}
	}
	out := map[int32]int64{}
	for _, p := range partitions {
		next, ok := t.next[p]
		if !ok {
			continue
		}
		offset := next
		for o := range t.pending[p] {
			offset = min(offset, o)
		}
		if c, done := t.committed[p]; !done || c != offset {
			out[p] = offset
		}
	}
	return out
}

func (t *offsetTracker) markCommitted(offsets map[int32]int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for p, o := range offsets {
		t.committed[p] = o
	}
}

func (t *offsetTracker) forget(partitions []int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range partitions {
		delete(t.pending, p)
		delete(t.next, p)
		delete(t.committed, p)
	}
}

func (e *Executor) openPool() (*kgo.Client, error) {
	cfg := e.opts.cfg
	topic := cfg.Topic("pool")
	onRevoked := func(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
		e.commitPool(ctx, cl, revoked[topic])
		e.tracker.forget(revoked[topic])
	}
	cl, err := kgo.NewClient(cfg.kafkaOpts(
		kgo.ConsumerGroup(cfg.TopicPrefix+"-pool"),
		// Round robin is what aiokafka members (Python executors) of the same group speak.
		kgo.Balancers(kgo.RoundRobinBalancer()),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.FetchMaxWait(200*time.Millisecond),
		kgo.OnPartitionsRevoked(onRevoked),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
			e.tracker.forget(lost[topic])
		}),
	)...)
	if err != nil {
		return nil, &BrokerError{Op: "executor cannot configure Kafka", Err: err}
	}
	return cl, nil
}

func (e *Executor) commitPool(ctx context.Context, cl *kgo.Client, partitions []int32) {
	if partitions != nil && len(partitions) == 0 {
		return
	}
	offsets := e.tracker.committable(partitions)
	if len(offsets) == 0 {
		return
	}
	topic := e.opts.cfg.Topic("pool")
	request := map[string]map[int32]kgo.EpochOffset{topic: {}}
	for p, o := range offsets {
		request[topic][p] = kgo.EpochOffset{Epoch: -1, Offset: o}
	}
	var failed error
	cl.CommitOffsetsSync(ctx, request, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		failed = err
		if err == nil && resp != nil {
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if p.ErrorCode != 0 {
						delete(offsets, p.Partition)
					}
				}
			}
		}
	})
	if failed != nil {
		e.recordError("", "", 0, &BrokerError{Op: "commit " + topic, Err: failed})
		return
	}
	e.tracker.markCommitted(offsets)
}

// readPool feeds pool records to the workers, keeping at most twice the workers in flight.
func (e *Executor) readPool(ctx context.Context) {
	defer e.loops.Done()
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for {
		room := 2*e.workers - e.tracker.inFlight()
		if room <= 0 {
			select {
			case <-ctx.Done():
				return
			case <-e.poolFreed:
			case <-ticker.C:
				e.commitPool(ctx, e.pool, nil)
			}
			continue
		}
		fetches := e.pool.PollRecords(ctx, room)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		fetches.EachError(func(topic string, p int32, err error) {
			e.recordError("", "", 0, &BrokerError{Op: "read " + topic, Err: err})
		})
		fetches.EachRecord(func(rec *kgo.Record) {
			e.tracker.seen(rec.Partition, rec.Offset)
			if !e.onPoolRecord(rec) {
				e.tracker.done(rec.Partition, rec.Offset)
			}
		})
		select {
		case <-ticker.C:
			e.commitPool(ctx, e.pool, nil)
		default:
		}
	}
}

// onPoolRecord queues a pool record's work; false when it needs none (a cancel, a kind or
// schema this SDK does not know).
func (e *Executor) onPoolRecord(rec *kgo.Record) bool {
	var a Assignment
	if name, err := e.codec.DecodeInto(rec.Value, &a); err != nil || name != "Assignment" {
		return false
	}
	switch a.Kind {
	case "task", "batch":
		return e.enqueueFrom(&a, homeHeader(rec), e.poolSession, rec)
	case "cancel":
		e.cancelTask(&a)
	}
	return false
}
