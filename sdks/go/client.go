package taskstream

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"sync"
	"time"
	"unicode"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Client produces commands to task.commands, each keyed by its client id and sent to the
// client's home partition by number (HomePartition of the partition count task.commands
// has). Before its first send it checks the topic layout; a missing or mismatched layout is
// a *TopicLayoutError saying what to run or set. Commands are validated and size-checked
// before anything is produced, so a bad request fails here, not as a dead letter later.
type Client struct {
	cfg   Config
	codec *Codec
	kafka *kgo.Client

	mu         sync.Mutex
	partitions int32 // of task.commands, once the layout is checked
	closed     bool
	layoutMu   sync.Mutex // one layout check for sends that start together
}

// Sent is where a command landed.
type Sent struct {
	Topic     string
	Partition int32
	Offset    int64
}

// NewClient connects a producer (lazily: the first send or CheckLayout reaches the broker).
func NewClient(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	cl, err := kgo.NewClient(cfg.kafkaOpts(
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		// No linger (franz-go's default is 10 ms): a record goes out at once, and batches
		// still form from what is produced while a request is in flight, as in the Python parts.
		kgo.ProducerLinger(0),
	)...)
	if err != nil {
		return nil, &BrokerError{Op: "client cannot configure Kafka", Err: err}
	}
	return &Client{cfg: cfg, codec: DefaultCodec(), kafka: cl}, nil
}

// Close flushes and closes the producer.
func (c *Client) Close() {
	c.mu.Lock()
	closed := c.closed
	c.closed = true
	c.mu.Unlock()
	if !closed {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.kafka.Flush(ctx)
		c.kafka.Close()
	}
}

// Config is the client's configuration, defaults filled in.
func (c *Client) Config() Config { return c.cfg }

// CheckLayout checks the topics and returns task.commands' partition count. Send calls it
// once, before the first command.
func (c *Client) CheckLayout(ctx context.Context) (int32, error) {
	n, err := checkLayout(ctx, c.kafka, c.cfg)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.partitions = n
	c.mu.Unlock()
	return n, nil
}

// sharedLayoutCheck checks the layout once for sends that start together: the first checks,
// the others wait and take its partition count.
func (c *Client) sharedLayoutCheck(ctx context.Context) (int32, error) {
	c.layoutMu.Lock()
	defer c.layoutMu.Unlock()
	c.mu.Lock()
	partitions := c.partitions
	c.mu.Unlock()
	if partitions != 0 {
		return partitions, nil
	}
	return c.CheckLayout(ctx)
}

// Send validates, size-checks and produces any command to its client's home partition.
func (c *Client) Send(ctx context.Context, cmd Command) (Sent, error) {
	withActor(cmd, c.cfg.Actor)
	value, err := encodeCommand(c.codec, cmd, c.cfg.MaxPayloadBytes)
	if err != nil {
		return Sent{}, err
	}
	c.mu.Lock()
	closed, partitions := c.closed, c.partitions
	c.mu.Unlock()
	if closed {
		return Sent{}, ErrClosed
	}
	if partitions == 0 {
		if partitions, err = c.sharedLayoutCheck(ctx); err != nil {
			return Sent{}, err
		}
	}
	return produceCommand(ctx, c.kafka, c.cfg.Topic("commands"), cmd, value, HomePartition(cmd.Client(), partitions))
}

func produceCommand(ctx context.Context, cl *kgo.Client, topic string, cmd Command, value []byte, partition int32) (Sent, error) {
	rec := &kgo.Record{
		Topic:     topic,
		Partition: partition,
		Key:       []byte(cmd.Client()),
		Value:     value,
		Headers:   []kgo.RecordHeader{{Key: "ts-type", Value: []byte(cmd.RecordName())}},
	}
	res := cl.ProduceSync(ctx, rec)
	if err := res.FirstErr(); err != nil {
		return Sent{}, &BrokerError{Op: "could not send " + cmd.RecordName(), Err: err}
	}
	return Sent{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}, nil
}

// ---- submitting -------------------------------------------------------------------------

// SubmitOption sets an optional SubmitTask field.
type SubmitOption func(*SubmitTask)

// WithTaskID sets the task id (the idempotency key); without it a new uuid4 is used.
func WithTaskID(id string) SubmitOption { return func(s *SubmitTask) { s.TaskID = id } }

// WithPriority: 1 (critical) to 5 (background); unset takes the operation's urgency.
func WithPriority(p int64) SubmitOption { return func(s *SubmitTask) { s.Priority = ptr(p) } }

// WithMaxRetries: retries after the first attempt before the task fails for good.
func WithMaxRetries(n int64) SubmitOption { return func(s *SubmitTask) { s.MaxRetries = ptr(n) } }

// WithTimeout: how long an attempt may run (whole milliseconds).
func WithTimeout(d time.Duration) SubmitOption {
	return func(s *SubmitTask) { s.TimeoutMs = ptr(d.Milliseconds()) }
}

// WithScheduledFor: do not start before t.
func WithScheduledFor(t time.Time) SubmitOption {
	return func(s *SubmitTask) { s.ScheduledForMs = ptr(t.UnixMilli()) }
}

// WithReview: the task waits for Approve or Reject first.
func WithReview() SubmitOption { return func(s *SubmitTask) { s.RequiresReview = true } }

// WithDependsOn: task ids of the same client that must complete first.
func WithDependsOn(ids ...string) SubmitOption {
	return func(s *SubmitTask) { s.DependsOn = append(s.DependsOn, ids...) }
}

// WithCapabilities: the task goes only to sessions that have all of them.
func WithCapabilities(names ...string) SubmitOption {
	return func(s *SubmitTask) { s.Capabilities = append(s.Capabilities, names...) }
}

// WithAttachment attaches a reference to a file: an http or https URL and the name people
// see; size (bytes, < 0: unknown) and contentType ("": unknown) are optional.
func WithAttachment(url, name string, size int64, contentType string) SubmitOption {
	return func(s *SubmitTask) {
		a := TaskAttachment{URL: url, Name: name}
		if size >= 0 {
			a.SizeBytes = ptr(size)
		}
		if contentType != "" {
			a.ContentType = ptr(contentType)
		}
		s.Attachments = append(s.Attachments, a)
	}
}

// Submit submits a task and returns its id. payload is any value that marshals to a JSON
// object (nil: {}); a json.RawMessage or []byte is sent as the JSON text it holds.
func (c *Client) Submit(ctx context.Context, clientID, operation string, payload any, opts ...SubmitOption) (string, error) {
	text, err := jsonObjectText("payload", payload)
	if err != nil {
		return "", err
	}
	cmd := &SubmitTask{
		ClientID: clientID, Operation: operation, Payload: text, DependsOn: []string{},
		Capabilities: []string{}, Tags: []string{}, Metadata: "{}", Steps: []TaskStep{},
		Attachments: []TaskAttachment{},
	}
	for _, opt := range opts {
		opt(cmd)
	}
	if cmd.TaskID == "" {
		cmd.TaskID = NewUUID()
	}
	if _, err := c.Send(ctx, cmd); err != nil {
		return "", err
	}
	return cmd.TaskID, nil
}

// BatchJobItem of SubmitBatchJob: a payload and an optional task id.
type BatchItem struct {
	TaskID  string // optional
	Payload any
}

// BatchJobOptions are SubmitBatchJob's optional fields.
type BatchJobOptions struct {
	BatchJobID   string // a new uuid4 when empty
	Parallelism  int64  // children unfinished at once (default 1)
	Priority     *int64
	MaxRetries   *int64
	Timeout      time.Duration
	Capabilities []string
}

// SubmitBatchJob submits a batch job (every item a child task of operation) and returns its id.
func (c *Client) SubmitBatchJob(ctx context.Context, clientID, operation string, items []BatchItem, opts BatchJobOptions) (string, error) {
	cmd := &SubmitBatchJob{
		ClientID: clientID, BatchJobID: opts.BatchJobID, Operation: operation,
		Items: []BatchJobItem{}, Parallelism: opts.Parallelism, Priority: opts.Priority,
		MaxRetries: opts.MaxRetries, Capabilities: append([]string{}, opts.Capabilities...),
	}
	if cmd.BatchJobID == "" {
		cmd.BatchJobID = NewUUID()
	}
	if cmd.Parallelism == 0 {
		cmd.Parallelism = 1
	}
	if opts.Timeout != 0 {
		cmd.TimeoutMs = ptr(opts.Timeout.Milliseconds())
	}
	for i, item := range items {
		text, err := jsonObjectText(fmt.Sprintf("items[%d].payload", i), item.Payload)
		if err != nil {
			return "", err
		}
		entry := BatchJobItem{Payload: text}
		if item.TaskID != "" {
			entry.TaskID = ptr(item.TaskID)
		}
		cmd.Items = append(cmd.Items, entry)
	}
	if _, err := c.Send(ctx, cmd); err != nil {
		return "", err
	}
	return cmd.BatchJobID, nil
}

// Cancel a task that has not ended; reason may be empty.
func (c *Client) Cancel(ctx context.Context, clientID, taskID, reason string) (Sent, error) {
	return c.Send(ctx, &CancelTask{ClientID: clientID, TaskID: taskID, Reason: optional(reason)})
}

// Approve a task submitted with review; reviewer may be empty.
func (c *Client) Approve(ctx context.Context, clientID, taskID, reviewer string) (Sent, error) {
	return c.Send(ctx, &ApproveTask{ClientID: clientID, TaskID: taskID, Reviewer: optional(reviewer)})
}

// Reject a task awaiting review; reviewer and reason may be empty.
func (c *Client) Reject(ctx context.Context, clientID, taskID, reviewer, reason string) (Sent, error) {
	return c.Send(ctx, &RejectTask{ClientID: clientID, TaskID: taskID, Reviewer: optional(reviewer), Reason: optional(reason)})
}

// Expedite raises a task that is not yet assigned to critical priority.
func (c *Client) Expedite(ctx context.Context, clientID, taskID string) (Sent, error) {
	return c.Send(ctx, &ExpediteTask{ClientID: clientID, TaskID: taskID})
}

// RegisterSession offers a session of a client with up to maxConcurrent units of work.
func (c *Client) RegisterSession(ctx context.Context, clientID, sessionID, agentID string, maxConcurrent int64, capabilities ...string) (Sent, error) {
	return c.Send(ctx, &RegisterSession{ClientID: clientID, SessionID: sessionID, AgentID: agentID,
		MaxConcurrent: maxConcurrent, Capabilities: append([]string{}, capabilities...)})
}

// ReleaseSession gives a session up; its work is queued again at once.
func (c *Client) ReleaseSession(ctx context.Context, clientID, sessionID, reason string) (Sent, error) {
	return c.Send(ctx, &ReleaseSession{ClientID: clientID, SessionID: sessionID, Reason: optional(reason)})
}

// Heartbeat says a session is alive.
func (c *Client) Heartbeat(ctx context.Context, clientID, sessionID string) (Sent, error) {
	return c.Send(ctx, &SessionHeartbeat{ClientID: clientID, SessionID: sessionID})
}

// withActor names actor as the sender of cmd unless it names one already or has no such
// field (executor reports).
func withActor(cmd Command, actor string) {
	var field **string
	switch c := cmd.(type) {
	case *SubmitTask:
		field = &c.Actor
	case *CancelTask:
		field = &c.Actor
	case *ApproveTask:
		field = &c.Actor
	case *RejectTask:
		field = &c.Actor
	case *ExpediteTask:
		field = &c.Actor
	case *RegisterSession:
		field = &c.Actor
	case *ReleaseSession:
		field = &c.Actor
	case *SubmitBatchJob:
		field = &c.Actor
	}
	if field != nil && *field == nil && actor != "" {
		*field = &actor
	}
}

// ---- validation (the one door every command goes through) -------------------------------

func encodeCommand(codec *Codec, cmd Command, maxBytes int) ([]byte, error) {
	if err := Validate(cmd); err != nil {
		return nil, err
	}
	value, err := codec.Encode(cmd)
	if err != nil {
		return nil, &InvalidCommandError{Reason: err.Error()}
	}
	if len(value) > maxBytes {
		return nil, &PayloadTooLargeError{Record: cmd.RecordName(), ClientID: cmd.Client(), Size: len(value), Limit: maxBytes}
	}
	return value, nil
}

// Validate checks a command as the processor would (ids, ranges, JSON text fields), so it
// is refused here instead of becoming a dead letter.
func Validate(cmd Command) error {
	v := validator{record: cmd.RecordName()}
	v.id("client_id", cmd.Client())
	switch c := cmd.(type) {
	case *SubmitTask:
		v.id("task_id", c.TaskID)
		v.id("operation", c.Operation)
		v.jsonObject("payload", c.Payload)
		v.rangeOpt("priority", c.Priority, 1, 5)
		v.rangeOpt("max_retries", c.MaxRetries, 0, -1)
		v.rangeOpt("timeout_ms", c.TimeoutMs, 1, -1)
		for _, id := range c.DependsOn {
			v.id("depends_on[]", id)
		}
		for _, name := range c.Capabilities {
			v.id("capabilities[]", name)
		}
		v.attachments(c.Attachments)
	case *CancelTask:
		v.id("task_id", c.TaskID)
	case *ApproveTask:
		v.id("task_id", c.TaskID)
	case *RejectTask:
		v.id("task_id", c.TaskID)
	case *ExpediteTask:
		v.id("task_id", c.TaskID)
	case *RegisterSession:
		v.id("session_id", c.SessionID)
		v.id("agent_id", c.AgentID)
		v.rangeOpt("max_concurrent", &c.MaxConcurrent, 1, -1)
	case *ReleaseSession:
		v.id("session_id", c.SessionID)
	case *SessionHeartbeat:
		v.id("session_id", c.SessionID)
	case *TaskStarted:
		v.id("task_id", c.TaskID)
	case *ReportProgress:
		v.id("task_id", c.TaskID)
		if !(c.Progress >= 0 && c.Progress <= 1) {
			v.fail("progress", "must be between 0.0 and 1.0")
		}
	case *ReportResult:
		if (c.TaskID == nil) == (c.BatchID == nil) {
			v.fail("task_id", "exactly one of task_id and batch_id is set")
		}
		v.jsonObject("output", c.Output)
		for _, item := range c.Items {
			v.jsonObject("items[].output", item.Output)
		}
		v.rangeOpt("execution_time_ms", &c.ExecutionTimeMs, 0, -1)
	case *SubmitBatchJob:
		v.id("batch_job_id", c.BatchJobID)
		v.id("operation", c.Operation)
		for _, item := range c.Items {
			if item.TaskID != nil {
				v.id("items[].task_id", *item.TaskID)
			}
			v.jsonObject("items[].payload", item.Payload)
		}
		v.rangeOpt("parallelism", &c.Parallelism, 1, -1)
		v.rangeOpt("priority", c.Priority, 1, 5)
		v.rangeOpt("max_retries", c.MaxRetries, 0, -1)
		v.rangeOpt("timeout_ms", c.TimeoutMs, 1, -1)
	default:
		return &InvalidCommandError{Reason: fmt.Sprintf("%T is not a command", cmd)}
	}
	if len(v.problems) > 0 {
		text := "invalid " + v.record + ": "
		for i, p := range v.problems {
			if i > 0 {
				text += "; "
			}
			text += p
		}
		return &InvalidCommandError{Reason: text[len("invalid "):]}
	}
	return nil
}

type validator struct {
	record   string
	problems []string
}

func (v *validator) fail(field, msg string) {
	v.problems = append(v.problems, field+": "+msg)
}

func (v *validator) id(field, value string) {
	switch {
	case value == "":
		v.fail(field, "must not be empty")
	case len([]rune(value)) > maxIDLength:
		v.fail(field, fmt.Sprintf("at most %d characters", maxIDLength))
	default:
		for _, r := range value {
			if unicode.IsControl(r) {
				v.fail(field, "must not contain control characters")
				return
			}
		}
	}
}

func (v *validator) rangeOpt(field string, value *int64, lo, hi int64) {
	if value == nil {
		return
	}
	if *value < lo || (hi >= lo && *value > hi) {
		if hi >= lo {
			v.fail(field, fmt.Sprintf("must be between %d and %d, got %d", lo, hi, *value))
		} else {
			v.fail(field, fmt.Sprintf("must be at least %d, got %d", lo, *value))
		}
	}
}

func (v *validator) jsonObject(field, text string) {
	if err := checkJSONObject(text); err != nil {
		v.fail(field, err.Error())
	}
}

const maxJSONDepth = 64

func checkJSONObject(text string) error {
	var value any
	if err := json.Unmarshal([]byte(text), &value); err != nil {
		return fmt.Errorf("not JSON text: %v", err)
	}
	if _, ok := value.(map[string]any); !ok {
		return fmt.Errorf("must be a JSON object")
	}
	if depth(value) > maxJSONDepth {
		return fmt.Errorf("nested more than %d levels", maxJSONDepth)
	}
	return nil
}

func depth(v any) int {
	switch v := v.(type) {
	case map[string]any:
		d := 0
		for _, x := range v {
			d = max(d, depth(x))
		}
		return d + 1
	case []any:
		d := 0
		for _, x := range v {
			d = max(d, depth(x))
		}
		return d + 1
	}
	return 0
}

// jsonObjectText is a payload or output as JSON text: compact, keys sorted (encoding/json
// sorts map keys), no HTML escaping.
func jsonObjectText(field string, v any) (string, error) {
	var text []byte
	switch v := v.(type) {
	case nil:
		return "{}", nil
	case json.RawMessage:
		text = v
	case []byte:
		text = v
	default:
		var err error
		if text, err = marshalJSON(v); err != nil {
			return "", &InvalidCommandError{Reason: fmt.Sprintf("%s: %v", field, err)}
		}
	}
	if err := checkJSONObject(string(text)); err != nil {
		return "", &InvalidCommandError{Reason: fmt.Sprintf("%s: %v", field, err)}
	}
	return string(text), nil
}

func marshalJSON(v any) ([]byte, error) {
	var buf jsonBuffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.b[:len(buf.b)-1], nil // Encode adds a newline
}

type jsonBuffer struct{ b []byte }

func (j *jsonBuffer) Write(p []byte) (int, error) { j.b = append(j.b, p...); return len(p), nil }

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// NewUUID is a random (version 4) UUID.
func NewUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
