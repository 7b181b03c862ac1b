package taskstream

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The executor serves sessions: it reads task.assignments (every partition, no consumer
// group, positions fixed at the end of each partition *before* the sessions are registered,
// so no assignment for them is missed), keeps the records of its sessions, runs each unit of
// work on a pool of workers shaped like seed 003's TaskDispatcher and reports TaskStarted,
// ReportProgress and ReportResult (with the assignment's fencing token) to the partition the
// assignment's ts-home header names; a start whose result follows within 20 ms travels in the
// result (Started, startfold.go). A cancel assignment cancels the handler's context; a
// task's deadline (deadline_at_ms, and its timeout_ms from when it starts) is the handler
// context's deadline.

// MaxWorkers bounds the workers of one executor.
const MaxWorkers = 64

// TaskStatus is where a unit of work is, as the progress callback reports it.
type TaskStatus int

const (
	StatusPending TaskStatus = iota
	StatusRunning
	StatusCompleted
	StatusFailed
	StatusCancelled
)

func (s TaskStatus) String() string {
	return [...]string{"pending", "running", "completed", "failed", "cancelled"}[s]
}

// Error texts of results the executor writes itself (the Python executor's).
const (
	ErrorTimeout   = "timeout"
	ErrorCancelled = "cancelled"
	ErrorShutdown  = "shutdown"
)

// Task is one task (or one item of a batch) handed to a handler.
type Task struct {
	ID           string
	ClientID     string
	Operation    string
	Payload      json.RawMessage // a JSON object
	Attempt      int64
	FencingToken int64
	Priority     int64
	SessionID    string
	BatchID      string // set for an item of a batch
	Deadline     time.Time

	progress func(fraction float64, message string)
}

// DecodePayload unmarshals the payload into v.
func (t *Task) DecodePayload(v any) error { return json.Unmarshal(t.Payload, v) }

// ReportProgress reports progress in [0, 1] (clamped), sent as a ReportProgress command.
func (t *Task) ReportProgress(fraction float64, message string) {
	if t.progress != nil {
		t.progress(min(1, max(0, fraction)), message)
	}
}

// HandlerFunc runs one task. Returning means success with that output (nil: {}); an error
// means failure with its text. ctx ends when the task is cancelled, its deadline passes or
// the executor shuts down.
type HandlerFunc func(ctx context.Context, task *Task) (map[string]any, error)

// Handlers maps operation names to handlers.
type Handlers map[string]HandlerFunc

// ProgressCallback sees every status change and progress report (progress in percent).
type ProgressCallback func(taskID string, status TaskStatus, progress int, message string)

// ExecutorMetrics counts tasks (batch items count one each).
type ExecutorMetrics struct {
	TotalTasks     int // received
	CompletedTasks int
	FailedTasks    int // includes timed out
	TimedOutTasks  int
	CancelledTasks int // cancelled by a cancel assignment or stopped by shutdown
	PendingTasks   int // queued, not started
	RunningTasks   int
	WorkerCount    int
	Sessions       int
}

// TaskError is one failed task, as GetErrors lists it.
type TaskError struct {
	TaskID       string
	ClientID     string
	FencingToken int64
	Error        error
	At           time.Time
}

// SessionSpec is a session the executor registers and serves.
type SessionSpec struct {
	SessionID     string
	ClientID      string
	AgentID       string
	MaxConcurrent int // handler calls at once, batch items included (default 1)
	Capabilities  []string
}

type executorOptions struct {
	cfg            Config
	sessions       []SessionSpec
	heartbeat      time.Duration
	defaultTimeout time.Duration
	defaultHandler HandlerFunc
	pool           bool
}

// ExecutorOption configures NewExecutor.
type ExecutorOption func(*executorOptions)

// WithConfig sets brokers and topic prefix (default: ConfigFromEnv()).
func WithConfig(cfg Config) ExecutorOption { return func(o *executorOptions) { o.cfg = cfg } }

// WithSessions adds sessions to register and serve.
func WithSessions(s ...SessionSpec) ExecutorOption {
	return func(o *executorOptions) { o.sessions = append(o.sessions, s...) }
}

// WithHeartbeatInterval: how often each session heartbeats (default 30 s; the processor
// cleans a session silent for TASKSTREAM_SESSION_STALE_MS, 5 min).
func WithHeartbeatInterval(d time.Duration) ExecutorOption {
	return func(o *executorOptions) { o.heartbeat = d }
}

// WithDefaultTimeout: the timeout of an assignment that carries none (default 5 min).
func WithDefaultTimeout(d time.Duration) ExecutorOption {
	return func(o *executorOptions) { o.defaultTimeout = d }
}

// WithDefaultHandler runs operations that have no handler of their own.
func WithDefaultHandler(h HandlerFunc) ExecutorOption {
	return func(o *executorOptions) { o.defaultHandler = h }
}

type session struct {
	spec  SessionSpec
	slots chan struct{} // MaxConcurrent handler calls
}

// item is one task of a unit of work.
type item struct {
	task   *Task
	cancel context.CancelCauseFunc
	mu     sync.Mutex
	reason string // why it was stopped: ErrorCancelled, ErrorShutdown
	done   bool
}

func (it *item) stop(reason string) {
	it.mu.Lock()
	if it.reason == "" && !it.done {
		it.reason = reason
	}
	cancel := it.cancel
	it.mu.Unlock()
	if cancel != nil {
		cancel(errors.New(reason))
	}
}

func (it *item) stopped() string {
	it.mu.Lock()
	defer it.mu.Unlock()
	return it.reason
}

// job is one assignment: a task, or a batch (one unit of the session's capacity).
type job struct {
	a       *Assignment
	home    int32
	session *session
	items   []*item
	seq     int64
	rec     *kgo.Record // the task.pool record of pool work (its offset is committed after)
}

type jobQueue []*job

func (q jobQueue) Len() int { return len(q) }
func (q jobQueue) Less(i, j int) bool {
	if q[i].a.Priority != q[j].a.Priority {
		return q[i].a.Priority < q[j].a.Priority // 1 is critical
	}
	return q[i].seq < q[j].seq
}
func (q jobQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *jobQueue) Push(x any)   { *q = append(*q, x.(*job)) }
func (q *jobQueue) Pop() any {
	old := *q
	j := old[len(old)-1]
	*q = old[:len(old)-1]
	return j
}

// Executor runs assignments of its sessions with a pool of workers.
type Executor struct {
	ctx      context.Context
	handlers Handlers
	workers  int
	opts     executorOptions
	codec    *Codec
	sessions map[string]*session

	producer    *kgo.Client
	assignments *kgo.Client
	pool        *kgo.Client
	poolSession *session // the pool's capacity: workers handler calls
	tracker     *offsetTracker
	poolFreed   chan struct{}
	partitions  int32 // of task.commands
	// sink, when set, takes the commands instead of Kafka (tests of the pool).
	sink func(cmd Command, partition int32) error
	// starts parks each TaskStarted for up to startHoldFor, for its result to carry.
	starts *startHold

	mu       sync.Mutex
	cond     *sync.Cond
	queue    jobQueue
	seq      int64
	byTask   map[string][]*item // open items by task id
	progress ProgressCallback
	metrics  ExecutorMetrics
	errs     []TaskError
	started  bool
	stopping bool
	stopped  bool

	runCtx    context.Context // handlers' parent: ends on shutdown after the drain
	runCancel context.CancelFunc
	pollStop  context.CancelFunc
	loops     sync.WaitGroup
	workersWG sync.WaitGroup
	shutdown  sync.Once
	shutErr   error
}

// NewExecutor makes an executor with handlers per operation and workers units of work at
// once (1 to MaxWorkers). Cancelling ctx stops it like Shutdown, cancelling the handlers.
func NewExecutor(ctx context.Context, handlers Handlers, workers int, opts ...ExecutorOption) (*Executor, error) {
	if workers < 1 || workers > MaxWorkers {
		return nil, &InvalidCommandError{Reason: fmt.Sprintf("workers must be between 1 and %d, got %d", MaxWorkers, workers)}
	}
	o := executorOptions{heartbeat: 30 * time.Second, defaultTimeout: 5 * time.Minute}
	o.cfg = ConfigFromEnv()
	for _, opt := range opts {
		opt(&o)
	}
	o.cfg = o.cfg.withDefaults()
	if len(o.sessions) == 0 && !o.pool {
		return nil, &InvalidCommandError{Reason: "nothing to serve: give sessions with WithSessions, WithPool, or both"}
	}
	e := &Executor{ctx: ctx, handlers: handlers, workers: workers, opts: o, codec: DefaultCodec(),
		sessions: map[string]*session{}, byTask: map[string][]*item{}}
	e.starts = newStartHold(startHoldFor, func(cmd *TaskStarted, home int32) { e.produceAsync(cmd, home) })
	if o.pool {
		e.poolSession = &session{spec: SessionSpec{MaxConcurrent: workers}, slots: make(chan struct{}, workers)}
		e.tracker = newOffsetTracker()
		e.poolFreed = make(chan struct{}, 1)
	}
	e.cond = sync.NewCond(&e.mu)
	for _, s := range o.sessions {
		if s.MaxConcurrent == 0 {
			s.MaxConcurrent = 1
		}
		if _, dup := e.sessions[s.SessionID]; dup {
			return nil, &InvalidCommandError{Reason: fmt.Sprintf("session ids must be unique: %s twice", s.SessionID)}
		}
		reg := &RegisterSession{ClientID: s.ClientID, SessionID: s.SessionID, AgentID: s.AgentID,
			MaxConcurrent: int64(s.MaxConcurrent), Capabilities: append([]string{}, s.Capabilities...)}
		if err := Validate(reg); err != nil {
			return nil, err
		}
		e.sessions[s.SessionID] = &session{spec: s, slots: make(chan struct{}, s.MaxConcurrent)}
	}
	e.metrics.WorkerCount = workers
	e.metrics.Sessions = len(e.sessions)
	return e, nil
}

// SetProgressCallback sets the callback for status changes and progress.
func (e *Executor) SetProgressCallback(cb ProgressCallback) {
	e.mu.Lock()
	e.progress = cb
	e.mu.Unlock()
}

// GetMetrics is a snapshot of the counters.
func (e *Executor) GetMetrics() ExecutorMetrics {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.metrics
	m.PendingTasks = 0
	for _, j := range e.queue {
		m.PendingTasks += len(j.items)
	}
	return m
}

// GetErrors lists every task that failed (handler errors, timeouts, shutdown), oldest first.
func (e *Executor) GetErrors() []TaskError {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]TaskError(nil), e.errs...)
}

// Start checks the topic layout, fixes the assignment positions, registers the sessions and
// starts the workers, the heartbeats and the assignment reader.
func (e *Executor) Start() error {
	e.mu.Lock()
	if e.started {
		e.mu.Unlock()
		return fmt.Errorf("%w: executor already started", Error)
	}
	e.started = true
	e.mu.Unlock()
	ctx := e.ctx
	cfg := e.opts.cfg

	producer, err := kgo.NewClient(cfg.kafkaOpts(
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		// No linger (franz-go's default is 10 ms): a record goes out at once, and batches
		// still form from what is produced while a request is in flight, as in the Python parts.
		kgo.ProducerLinger(0),
	)...)
	if err != nil {
		return &BrokerError{Op: "executor cannot configure Kafka", Err: err}
	}
	e.producer = producer
	if e.partitions, err = checkLayout(ctx, producer, cfg); err != nil {
		producer.Close()
		return err
	}
	if err := e.openConsumers(); err != nil {
		producer.Close()
		return err
	}
	pollCtx := e.startWorkers()
	if e.assignments != nil {
		e.loops.Add(2)
		go e.readAssignments(pollCtx)
		go e.heartbeats(pollCtx)
	}
	if e.pool != nil {
		e.loops.Add(1)
		go e.readPool(pollCtx)
	}
	return nil
}

// openConsumers positions the assignment reader, registers the sessions (in that order, so
// no assignment for them is missed) and joins the pool's group.
func (e *Executor) openConsumers() error {
	ctx, cfg := e.ctx, e.opts.cfg
	if e.opts.pool {
		pool, err := e.openPool()
		if err != nil {
			return err
		}
		e.pool = pool
	}
	if len(e.sessions) == 0 {
		return nil
	}
	topic := cfg.Topic("assignments")
	ends, err := kadm.NewClient(e.producer).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		e.closePool()
		return &BrokerError{Op: "list the end offsets of " + topic, Err: err}
	}
	at := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) { at[o.Partition] = kgo.NewOffset().At(o.Offset) })
	assignments, err := kgo.NewClient(cfg.kafkaOpts(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: at}),
		kgo.FetchMaxWait(200*time.Millisecond),
	)...)
	if err != nil {
		e.closePool()
		return &BrokerError{Op: "executor cannot configure Kafka", Err: err}
	}

	for _, s := range e.sessions {
		spec := s.spec
		if _, err := e.send(ctx, &RegisterSession{ClientID: spec.ClientID, SessionID: spec.SessionID,
			AgentID: spec.AgentID, MaxConcurrent: int64(spec.MaxConcurrent),
			Capabilities: append([]string{}, spec.Capabilities...)}, -1); err != nil {
			assignments.Close()
			e.closePool()
			return err
		}
	}
	e.assignments = assignments
	return nil
}

func (e *Executor) closePool() {
	if e.pool != nil {
		e.pool.Close()
		e.pool = nil
	}
}

// startWorkers starts the workers and the watch on the executor's context; it returns the
// context of the loops that feed them (done on shutdown).
func (e *Executor) startWorkers() context.Context {
	e.runCtx, e.runCancel = context.WithCancel(context.WithoutCancel(e.ctx))
	pollCtx, pollStop := context.WithCancel(context.Background())
	e.pollStop = pollStop
	for i := 0; i < e.workers; i++ {
		e.workersWG.Add(1)
		go e.worker()
	}
	go func() {
		select {
		case <-e.ctx.Done():
			// Cancelling the executor's context cancels the handlers at once.
			_ = e.stop(0)
		case <-pollCtx.Done():
		}
	}()
	return pollCtx
}

// Shutdown stops taking work, waits up to timeout for the work in hand (then cancels the
// handlers and reports what was left as failed with "shutdown"), releases the sessions and
// closes the Kafka clients. It returns an error when the drain did not finish in time.
func (e *Executor) Shutdown(timeout time.Duration) error { return e.stop(timeout) }

func (e *Executor) stop(timeout time.Duration) error {
	e.shutdown.Do(func() { e.shutErr = e.doStop(timeout) })
	return e.shutErr
}

func (e *Executor) doStop(timeout time.Duration) error {
	e.mu.Lock()
	if !e.started || e.runCancel == nil {
		e.stopped = true // never started, or Start failed and closed what it opened
		e.mu.Unlock()
		return nil
	}
	e.stopping = true
	// Queued work that never started is given back as "shutdown" failures.
	queued := append(jobQueue(nil), e.queue...)
	e.queue = nil
	e.cond.Broadcast()
	e.mu.Unlock()
	e.pollStop()
	e.loops.Wait()
	for _, j := range queued {
		for _, it := range j.items {
			it.stop(ErrorShutdown)
		}
		e.workersWG.Add(1)
		go func(j *job) { defer e.workersWG.Done(); e.finish(j, time.Now(), e.outcomesStopped(j)) }(j)
	}
	drained := make(chan struct{})
	go func() { e.workersWG.Wait(); close(drained) }()
	var err error
	select {
	case <-drained:
	case <-time.After(timeout):
		err = fmt.Errorf("%w: work still running after %s; its handlers were cancelled", Error, timeout)
		e.mu.Lock()
		var open []*item
		for _, items := range e.byTask {
			open = append(open, items...)
		}
		e.mu.Unlock()
		for _, it := range open {
			it.stop(ErrorShutdown)
		}
		<-drained
	}
	// Every result is sent: the starts still parked (of work whose result is not sent, as a
	// cancelled task's) go out now, before the releases and the flush.
	e.starts.close()
	e.runCancel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range e.sessions {
		_, _ = e.send(ctx, &ReleaseSession{ClientID: s.spec.ClientID, SessionID: s.spec.SessionID,
			Reason: ptr("executor shutdown")}, -1)
	}
	if e.producer != nil {
		if ferr := e.producer.Flush(ctx); ferr != nil && err == nil {
			err = &BrokerError{Op: "flush the executor's commands", Err: ferr}
		}
		if e.pool != nil {
			e.commitPool(ctx, e.pool, nil)
			e.pool.Close()
		}
		if e.assignments != nil {
			e.assignments.Close()
		}
		e.producer.Close()
	}
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	return err
}

// send produces a command to home (or the client's home partition when home < 0). Results
// are sent synchronously, so a result is on the broker before its unit frees its worker. A
// result carries the parked starts of its attempts (Started); anything else but a result
// sends the parked starts in front of it.
func (e *Executor) send(ctx context.Context, cmd Command, home int32) (Sent, error) {
	var folded []*parkedStart
	if r, ok := cmd.(*ReportResult); ok {
		folded = e.starts.fold(r)
	} else {
		e.starts.releaseAll() // a registration, a release: nothing folds across it
	}
	value, err := encodeCommand(e.codec, cmd, e.opts.cfg.MaxPayloadBytes)
	if err != nil {
		e.starts.unfold(folded) // the result does not go out: its starts go alone
		return Sent{}, err
	}
	if home < 0 || home >= e.partitions {
		home = HomePartition(cmd.Client(), e.partitions)
	}
	if e.sink != nil {
		return Sent{Partition: home}, e.sink(cmd, home)
	}
	return produceCommand(ctx, e.producer, e.opts.cfg.Topic("commands"), cmd, value, home)
}

// sendAsync produces without waiting (TaskStarted, ReportProgress, SessionHeartbeat); the
// producer keeps their order per partition, so they precede the result. A TaskStarted is
// parked for its result (startfold.go); a progress sends its attempt's parked start first.
func (e *Executor) sendAsync(cmd Command, home int32) {
	switch c := cmd.(type) {
	case *TaskStarted:
		e.starts.park(c, home)
		return
	case *ReportProgress:
		e.starts.release(attempt{c.ClientID, c.TaskID, c.FencingToken})
	case *SessionHeartbeat:
		// Says nothing about any attempt: a start may fold across it.
	default:
		e.starts.releaseAll()
	}
	e.produceAsync(cmd, home)
}

// produceAsync produces cmd without waiting; a delivery error is listed by GetErrors.
func (e *Executor) produceAsync(cmd Command, home int32) {
	value, err := encodeCommand(e.codec, cmd, e.opts.cfg.MaxPayloadBytes)
	if err != nil {
		e.recordError(cmd.Client(), "", 0, err)
		return
	}
	if home < 0 || home >= e.partitions {
		home = HomePartition(cmd.Client(), e.partitions)
	}
	if e.sink != nil {
		_ = e.sink(cmd, home)
		return
	}
	e.producer.Produce(context.Background(), &kgo.Record{
		Topic: e.opts.cfg.Topic("commands"), Partition: home, Key: []byte(cmd.Client()), Value: value,
		Headers: []kgo.RecordHeader{{Key: "ts-type", Value: []byte(cmd.RecordName())}},
	}, func(_ *kgo.Record, err error) {
		if err != nil {
			e.recordError(cmd.Client(), "", 0, &BrokerError{Op: "could not send " + cmd.RecordName(), Err: err})
		}
	})
}

func (e *Executor) recordError(clientID, taskID string, token int64, err error) {
	e.mu.Lock()
	e.errs = append(e.errs, TaskError{TaskID: taskID, ClientID: clientID, FencingToken: token, Error: err, At: time.Now()})
	e.mu.Unlock()
}

func (e *Executor) heartbeats(ctx context.Context) {
	defer e.loops.Done()
	ticker := time.NewTicker(e.opts.heartbeat)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			for _, s := range e.sessions {
				e.sendAsync(&SessionHeartbeat{ClientID: s.spec.ClientID, SessionID: s.spec.SessionID}, -1)
			}
		}
	}
}

func (e *Executor) readAssignments(ctx context.Context) {
	defer e.loops.Done()
	for {
		fetches := e.assignments.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		fetches.EachError(func(topic string, p int32, err error) {
			e.recordError("", "", 0, &BrokerError{Op: fmt.Sprintf("read %s[%d]", topic, p), Err: err})
		})
		fetches.EachRecord(e.onAssignment)
	}
}

func homeHeader(rec *kgo.Record) int32 {
	for _, h := range rec.Headers {
		if h.Key == "ts-home" {
			if n, err := strconv.ParseInt(string(h.Value), 10, 32); err == nil {
				return int32(n)
			}
		}
	}
	return -1
}

func (e *Executor) onAssignment(rec *kgo.Record) {
	var a Assignment
	if name, err := e.codec.DecodeInto(rec.Value, &a); err != nil || name != "Assignment" {
		return // not an assignment this SDK reads (a newer schema): skip it
	}
	if a.SessionID == nil {
		return
	}
	s := e.sessions[*a.SessionID]
	if s == nil {
		return
	}
	switch a.Kind {
	case "task", "batch":
		e.enqueueFrom(&a, homeHeader(rec), s, nil)
	case "cancel":
		e.cancelTask(&a)
	}
	// Any other kind: later versions may add kinds; skip it.
}

// enqueueFrom queues an assignment's work; false when there is nothing to run.
func (e *Executor) enqueueFrom(a *Assignment, home int32, s *session, rec *kgo.Record) bool {
	j := &job{a: a, home: home, session: s, rec: rec}
	timeout := time.Duration(a.TimeoutMs) * time.Millisecond
	if timeout <= 0 {
		timeout = e.opts.defaultTimeout
	}
	deadline := time.UnixMilli(a.DeadlineAtMs)
	if a.DeadlineAtMs <= 0 {
		deadline = time.Now().Add(timeout)
	}
	for _, x := range a.Items {
		t := &Task{ID: x.TaskID, ClientID: a.ClientID, Operation: a.Operation, Payload: json.RawMessage(x.Payload),
			Attempt: a.Attempt, FencingToken: a.FencingToken, Priority: a.Priority, SessionID: s.spec.SessionID,
			Deadline: deadline}
		if a.Kind == "batch" && a.BatchID != nil {
			t.BatchID = *a.BatchID
		}
		j.items = append(j.items, &item{task: t})
	}
	if len(j.items) == 0 {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopping {
		// Not run: the attempt times out and is retried elsewhere. Pool work stays
		// uncommitted, so the next owner of the partition reads it again.
		return true
	}
	e.seq++
	j.seq = e.seq
	for _, it := range j.items {
		e.byTask[it.task.ID] = append(e.byTask[it.task.ID], it)
	}
	e.metrics.TotalTasks += len(j.items)
	heap.Push(&e.queue, j)
	e.cond.Signal()
	return true
}

func (e *Executor) cancelTask(a *Assignment) {
	if a.TaskID == nil {
		return
	}
	e.mu.Lock()
	items := append([]*item(nil), e.byTask[*a.TaskID]...)
	e.mu.Unlock()
	for _, it := range items {
		if it.task.FencingToken <= a.FencingToken || a.FencingToken == 0 {
			it.stop(ErrorCancelled)
		}
	}
}

func (e *Executor) worker() {
	defer e.workersWG.Done()
	for {
		e.mu.Lock()
		for len(e.queue) == 0 && !e.stopping {
			e.cond.Wait()
		}
		if len(e.queue) == 0 {
			e.mu.Unlock()
			return
		}
		j := heap.Pop(&e.queue).(*job)
		e.mu.Unlock()
		e.run(j)
	}
}

type itemOutcome struct {
	success   bool
	output    string
	err       string
	cancelled bool // by a cancel assignment: nothing is reported for a task
	timedOut  bool
}

func (e *Executor) outcomesStopped(j *job) []itemOutcome {
	out := make([]itemOutcome, len(j.items))
	for i, it := range j.items {
		out[i] = stoppedOutcome(it.stopped())
	}
	return out
}

func stoppedOutcome(reason string) itemOutcome {
	if reason == ErrorCancelled {
		return itemOutcome{err: ErrorCancelled, cancelled: true}
	}
	if reason == "" {
		reason = ErrorCancelled
	}
	return itemOutcome{err: reason}
}

func (e *Executor) run(j *job) {
	started := time.Now()
	outcomes := make([]itemOutcome, len(j.items))
	var wg sync.WaitGroup
	for i, it := range j.items {
		wg.Add(1)
		go func() { defer wg.Done(); outcomes[i] = e.runItem(j, it) }()
	}
	wg.Wait()
	e.finish(j, started, outcomes)
}

// finish reports a unit's result and settles its counters.
func (e *Executor) finish(j *job, started time.Time, outcomes []itemOutcome) {
	a := j.a
	elapsed := time.Since(started).Milliseconds()
	e.mu.Lock()
	for i, it := range j.items {
		it.mu.Lock()
		it.done = true
		it.mu.Unlock()
		rest := e.byTask[it.task.ID][:0]
		for _, other := range e.byTask[it.task.ID] {
			if other != it {
				rest = append(rest, other)
			}
		}
		if len(rest) == 0 {
			delete(e.byTask, it.task.ID)
		} else {
			e.byTask[it.task.ID] = rest
		}
		o := outcomes[i]
		status := StatusCompleted
		switch {
		case o.success:
			e.metrics.CompletedTasks++
		case o.cancelled || o.err == ErrorShutdown:
			e.metrics.CancelledTasks++
			status = StatusCancelled
		default:
			e.metrics.FailedTasks++
			if o.timedOut {
				e.metrics.TimedOutTasks++
			}
			status = StatusFailed
		}
		if !o.success && !o.cancelled {
			e.errs = append(e.errs, TaskError{TaskID: it.task.ID, ClientID: a.ClientID,
				FencingToken: a.FencingToken, Error: errors.New(o.err), At: time.Now()})
		}
		e.notifyLocked(it.task.ID, status, map[bool]int{true: 100}[o.success], o.err)
	}
	e.mu.Unlock()

	result := &ReportResult{ClientID: a.ClientID, SessionID: a.SessionID, FencingToken: a.FencingToken,
		Output: "{}", Items: []ItemResult{}, ExecutionTimeMs: elapsed}
	if a.Kind == "task" {
		o := outcomes[0]
		if o.cancelled {
			e.poolRecordDone(j)
			return // the processor cancelled it before it told us; no result is expected
		}
		result.TaskID = ptr(j.items[0].task.ID)
		result.Success = o.success
		if o.success {
			result.Output = o.output
		} else {
			result.Error = ptr(o.err)
		}
	} else {
		failures := 0
		all := true
		for i, o := range outcomes {
			all = all && o.cancelled
			ir := ItemResult{TaskID: j.items[i].task.ID, Success: o.success, Output: "{}"}
			if o.success {
				ir.Output = o.output
			} else {
				failures++
				ir.Error = ptr(o.err)
			}
			result.Items = append(result.Items, ir)
		}
		if all {
			e.poolRecordDone(j)
			return
		}
		result.BatchID = a.BatchID
		result.Success = failures == 0
		result.Output = fmt.Sprintf(`{"failed":%d,"succeeded":%d}`, failures, len(outcomes)-failures)
		if failures > 0 {
			result.Error = ptr(fmt.Sprintf("%d of %d items failed", failures, len(outcomes)))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.send(ctx, result, j.home); err != nil {
		e.recordError(a.ClientID, "", a.FencingToken, err)
		return // not delivered: its pool offset stays uncommitted
	}
	e.poolRecordDone(j)
}

func (e *Executor) poolRecordDone(j *job) {
	if j.rec == nil {
		return
	}
	e.tracker.done(j.rec.Partition, j.rec.Offset)
	select {
	case e.poolFreed <- struct{}{}:
	default:
	}
}

func (e *Executor) notifyLocked(taskID string, status TaskStatus, progress int, message string) {
	if cb := e.progress; cb != nil {
		// Outside the lock: a callback may call GetMetrics.
		e.mu.Unlock()
		defer e.mu.Lock()
		cb(taskID, status, progress, message)
	}
}

func (e *Executor) runItem(j *job, it *item) itemOutcome {
	a := j.a
	// The session's max_concurrent bounds handler calls, batch items included.
	select {
	case j.session.slots <- struct{}{}:
	case <-e.runCtx.Done():
		return itemOutcome{err: ErrorShutdown}
	}
	defer func() { <-j.session.slots }()
	if reason := it.stopped(); reason != "" {
		return stoppedOutcome(reason)
	}
	handler := e.handlers[a.Operation]
	if handler == nil {
		handler = e.opts.defaultHandler
	}
	if handler == nil {
		return itemOutcome{err: fmt.Sprintf("no handler for operation %q", a.Operation)}
	}
	timeout := time.Duration(a.TimeoutMs) * time.Millisecond
	if timeout <= 0 {
		timeout = e.opts.defaultTimeout
	}
	deadline := it.task.Deadline
	if byTimeout := time.Now().Add(timeout); byTimeout.Before(deadline) {
		deadline = byTimeout
	}
	ctx, cancelCause := context.WithCancelCause(e.runCtx)
	ctx, cancelDeadline := context.WithDeadline(ctx, deadline)
	defer cancelDeadline()
	defer cancelCause(nil)
	it.mu.Lock()
	it.cancel = cancelCause
	reason := it.reason
	it.mu.Unlock()
	if reason != "" {
		return stoppedOutcome(reason)
	}
	task := it.task
	token, home := a.FencingToken, j.home
	task.progress = func(fraction float64, message string) {
		if it.stopped() != "" || ctx.Err() != nil {
			return
		}
		e.sendAsync(&ReportProgress{ClientID: a.ClientID, TaskID: task.ID, FencingToken: token,
			Progress: fraction, Message: optional(message)}, home)
		e.mu.Lock()
		e.notifyLocked(task.ID, StatusRunning, int(fraction*100), message)
		e.mu.Unlock()
	}
	e.sendAsync(&TaskStarted{ClientID: a.ClientID, TaskID: task.ID, FencingToken: token}, home)
	e.mu.Lock()
	e.metrics.RunningTasks++
	e.notifyLocked(task.ID, StatusRunning, 0, "")
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.metrics.RunningTasks--
		e.mu.Unlock()
	}()

	// A handler that ignores its context is not waited for past the deadline or a cancel:
	// another attempt may already run, so its late answer would not count anyway.
	type answer struct {
		output map[string]any
		err    error
	}
	answers := make(chan answer, 1)
	go func() {
		out, err := callHandler(ctx, handler, task)
		answers <- answer{out, err}
	}()
	var output map[string]any
	var err error
	select {
	case got := <-answers:
		output, err = got.output, got.err
	case <-ctx.Done():
	}
	if reason := it.stopped(); reason != "" {
		// Stopped while running; whatever the handler did on its way out does not count.
		return stoppedOutcome(reason)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return itemOutcome{err: ErrorTimeout, timedOut: true}
	}
	if ctx.Err() != nil {
		return itemOutcome{err: ErrorShutdown}
	}
	if err != nil {
		return itemOutcome{err: err.Error()}
	}
	if output == nil {
		output = map[string]any{}
	}
	text, merr := marshalJSON(output)
	if merr != nil {
		return itemOutcome{err: fmt.Sprintf("handler output is not JSON: %v", merr)}
	}
	return itemOutcome{success: true, output: string(text)}
}

// callHandler runs a handler, turning a panic into a failure.
func callHandler(ctx context.Context, h HandlerFunc, t *Task) (out map[string]any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h(ctx, t)
}
