package taskstream

import (
	"context"
	"errors"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Outcome is one task's ending: a TaskCompleted on task.completed, or a TaskFailed on
// task.failed whose Outcome is failed, cancelled, rejected or refused.
type Outcome struct {
	Completed *TaskCompleted // set for a completion
	Failed    *TaskFailed    // set for every other ending
	Topic     string
	Partition int32
	Offset    int64
}

func (o Outcome) TaskID() string {
	if o.Completed != nil {
		return o.Completed.TaskID
	}
	return o.Failed.TaskID
}

func (o Outcome) ClientID() string {
	if o.Completed != nil {
		return o.Completed.ClientID
	}
	return o.Failed.ClientID
}

// Kind is completed, failed, cancelled, rejected or refused.
func (o Outcome) Kind() string {
	if o.Completed != nil {
		return "completed"
	}
	return o.Failed.Outcome
}

// Outcomes reads task.completed and task.failed in a consumer group. An outcome's offset is
// committed only when the caller asks for the next one (or calls Close(true)), i.e. after
// the caller handled it: a crash delivers the outcome in hand again. Delivery is at least
// once; handle outcomes idempotently by task id.
type Outcomes struct {
	codec  *Codec
	kafka  *kgo.Client
	mu     sync.Mutex
	buffer []*kgo.Record
	inHand *kgo.Record
	// Skipped counts records that are not outcomes this SDK can read (unknown fingerprints).
	Skipped int
}

// Outcomes opens an outcome stream in consumer group groupID (a new group starts at the
// beginning of the topics).
func (c *Client) Outcomes(groupID string) (*Outcomes, error) {
	if groupID == "" {
		return nil, &InvalidCommandError{Reason: "Outcomes needs a consumer group id"}
	}
	o := &Outcomes{codec: c.codec}
	cl, err := kgo.NewClient(c.cfg.kafkaOpts(
		kgo.ConsumerGroup(groupID),
		kgo.ConsumeTopics(c.cfg.Topic("completed"), c.cfg.Topic("failed")),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.OnPartitionsRevoked(o.dropRevoked),
		kgo.OnPartitionsLost(o.dropRevoked),
	)...)
	if err != nil {
		return nil, &BrokerError{Op: "outcomes cannot configure Kafka", Err: err}
	}
	o.kafka = cl
	return o, nil
}

func (o *Outcomes) dropRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	gone := func(r *kgo.Record) bool {
		for _, p := range revoked[r.Topic] {
			if p == r.Partition {
				return true
			}
		}
		return false
	}
	kept := o.buffer[:0]
	for _, r := range o.buffer {
		if !gone(r) {
			kept = append(kept, r)
		}
	}
	o.buffer = kept
	if o.inHand != nil && gone(o.inHand) {
		o.inHand = nil // its new owner reads it again
	}
}

// Next commits the outcome handed out before and waits for the next one.
func (o *Outcomes) Next(ctx context.Context) (Outcome, error) {
	if err := o.commitInHand(ctx); err != nil {
		return Outcome{}, err
	}
	for {
		o.mu.Lock()
		for len(o.buffer) > 0 {
			rec := o.buffer[0]
			o.buffer = o.buffer[1:]
			out, ok := o.decode(rec)
			if !ok {
				o.Skipped++
				continue
			}
			o.inHand = rec
			o.mu.Unlock()
			return out, nil
		}
		o.mu.Unlock()
		fetches := o.kafka.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return Outcome{}, err
		}
		if fetches.IsClientClosed() {
			return Outcome{}, ErrClosed
		}
		var fatal error
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				fatal = &BrokerError{Op: "read outcomes from " + topic, Err: err}
			}
		})
		if fatal != nil {
			return Outcome{}, fatal
		}
		o.mu.Lock()
		o.buffer = append(o.buffer, fetches.Records()...)
		o.mu.Unlock()
	}
}

func (o *Outcomes) decode(rec *kgo.Record) (Outcome, bool) {
	r, err := o.codec.Decode(rec.Value)
	if err != nil {
		return Outcome{}, false
	}
	out := Outcome{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}
	switch r := r.(type) {
	case *TaskCompleted:
		out.Completed = r
	case *TaskFailed:
		out.Failed = r
	default:
		return Outcome{}, false
	}
	return out, true
}

func (o *Outcomes) commitInHand(ctx context.Context) error {
	o.mu.Lock()
	rec := o.inHand
	o.inHand = nil
	o.mu.Unlock()
	if rec == nil {
		return nil
	}
	if err := o.kafka.CommitRecords(ctx, rec); err != nil {
		return &BrokerError{Op: "commit outcome", Err: err}
	}
	return nil
}

// Close leaves the group; handled commits the outcome in hand first.
func (o *Outcomes) Close(handled bool) {
	if handled {
		ctx, cancel := context.WithTimeout(context.Background(), 10*1e9)
		_ = o.commitInHand(ctx)
		cancel()
	}
	o.kafka.Close()
}
