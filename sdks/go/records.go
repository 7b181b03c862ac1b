package taskstream

// Typed records of the wire contract (docs/protocol.md): the commands a client or executor
// sends, the Assignment an executor reads and the two outcome records. Field tags are the
// Avro field names; a ["null", T] union is a *T. JSON text fields (payload, output) are the
// JSON text itself. Every other record decodes to a *GenericRecord.

// Record is a value with an Avro schema of schemas/avro.
type Record interface{ RecordName() string }

// GenericRecord is a record the SDK has no struct for, as hamba/avro decodes it.
type GenericRecord struct {
	Name  string
	Value map[string]any
}

func (g *GenericRecord) RecordName() string { return g.Name }

type SubmitTask struct {
	ClientID       string   `avro:"client_id"`
	TaskID         string   `avro:"task_id"`
	Operation      string   `avro:"operation"`
	Payload        string   `avro:"payload"`
	Priority       *int64   `avro:"priority"`
	MaxRetries     *int64   `avro:"max_retries"`
	TimeoutMs      *int64   `avro:"timeout_ms"`
	ScheduledForMs *int64   `avro:"scheduled_for_ms"`
	RequiresReview bool     `avro:"requires_review"`
	DependsOn      []string `avro:"depends_on"`
	Capabilities   []string `avro:"capabilities"`
	Actor          *string  `avro:"actor"`
	// SubmitTask v4: what people manage (title, tags, due date, assignee), steps, a template.
	Title       *string       `avro:"title"`
	Description *string       `avro:"description"`
	Tags        []string      `avro:"tags"`
	Metadata    string        `avro:"metadata"` // JSON object text, "{}" when none
	DueAtMs     *int64        `avro:"due_at_ms"`
	AssignedTo  *TaskAssignee `avro:"assigned_to"`
	Steps       []TaskStep    `avro:"steps"`
	Template    *string       `avro:"template"`
	// SubmitTask v5: references to files, shown on the task (at most 20).
	Attachments []TaskAttachment `avro:"attachments"`
}

// TaskAttachment: a reference to a file kept elsewhere (an http or https URL, a name of
// 1..255 characters, its size and media type when known).
type TaskAttachment struct {
	URL         string  `avro:"url"`
	Name        string  `avro:"name"`
	SizeBytes   *int64  `avro:"size_bytes"`
	ContentType *string `avro:"content_type"`
}

// TaskAssignee: the task runs only on this agent's sessions (kind "agent") or this session.
type TaskAssignee struct {
	Kind string `avro:"kind"`
	ID   string `avro:"id"`
}

// TaskStep: one step of a multi-step task (docs/workflows.md).
type TaskStep struct {
	ID            string   `avro:"id"`
	Name          *string  `avro:"name"`
	Operation     string   `avro:"operation"`
	Config        string   `avro:"config"` // JSON object text
	DependsOn     []string `avro:"depends_on"`
	FailurePolicy string   `avro:"failure_policy"`
}

type CancelTask struct {
	ClientID string  `avro:"client_id"`
	TaskID   string  `avro:"task_id"`
	Reason   *string `avro:"reason"`
	Actor    *string `avro:"actor"`
}

type ApproveTask struct {
	ClientID string  `avro:"client_id"`
	TaskID   string  `avro:"task_id"`
	Reviewer *string `avro:"reviewer"`
	Actor    *string `avro:"actor"`
}

type RejectTask struct {
	ClientID string  `avro:"client_id"`
	TaskID   string  `avro:"task_id"`
	Reviewer *string `avro:"reviewer"`
	Reason   *string `avro:"reason"`
	Actor    *string `avro:"actor"`
}

type ExpediteTask struct {
	ClientID string  `avro:"client_id"`
	TaskID   string  `avro:"task_id"`
	Actor    *string `avro:"actor"`
}

type RegisterSession struct {
	ClientID      string   `avro:"client_id"`
	SessionID     string   `avro:"session_id"`
	AgentID       string   `avro:"agent_id"`
	MaxConcurrent int64    `avro:"max_concurrent"`
	Capabilities  []string `avro:"capabilities"`
	Actor         *string  `avro:"actor"`
	Incarnation   *string  `avro:"incarnation"`
}

type ReleaseSession struct {
	ClientID  string  `avro:"client_id"`
	SessionID string  `avro:"session_id"`
	Reason    *string `avro:"reason"`
	Actor     *string `avro:"actor"`
}

type SessionHeartbeat struct {
	ClientID  string   `avro:"client_id"`
	SessionID string   `avro:"session_id"`
	Workload  *float64 `avro:"workload"`
}

type TaskStarted struct {
	ClientID     string `avro:"client_id"`
	TaskID       string `avro:"task_id"`
	FencingToken int64  `avro:"fencing_token"`
}

type ReportProgress struct {
	ClientID     string  `avro:"client_id"`
	TaskID       string  `avro:"task_id"`
	FencingToken int64   `avro:"fencing_token"`
	Progress     float64 `avro:"progress"`
	Message      *string `avro:"message"`
}

type ItemResult struct {
	TaskID       string  `avro:"task_id"`
	Success      bool    `avro:"success"`
	Output       string  `avro:"output"`
	Error        *string `avro:"error"`
	FailureClass *string `avro:"failure_class"`
	RetryAfterMs *int64  `avro:"retry_after_ms"`
	// Started folds the item's TaskStarted into the result (none was sent for it).
	Started bool `avro:"started"`
}

type ReportResult struct {
	ClientID        string       `avro:"client_id"`
	TaskID          *string      `avro:"task_id"`
	BatchID         *string      `avro:"batch_id"`
	SessionID       *string      `avro:"session_id"`
	FencingToken    int64        `avro:"fencing_token"`
	Success         bool         `avro:"success"`
	Output          string       `avro:"output"`
	Error           *string      `avro:"error"`
	Items           []ItemResult `avro:"items"`
	ExecutionTimeMs int64        `avro:"execution_time_ms"`
	FailureClass    *string      `avro:"failure_class"`
	RetryAfterMs    *int64       `avro:"retry_after_ms"`
	// Traceback is a failed attempt's full traceback (mask credentials before sending).
	Traceback     *string        `avro:"traceback"`
	ResourcesUsed *ResourcesUsed `avro:"resources_used"`
	// Quality is the handler's own score of its result, 0 to 1.
	Quality *float64 `avro:"quality"`
	// Started folds the task's TaskStarted into the result (none was sent for it).
	Started bool `avro:"started"`
}

// ResourcesUsed is what one attempt used: CPU seconds, peak memory and disk written in MiB.
type ResourcesUsed struct {
	CPU    float64 `avro:"cpu"`
	Memory float64 `avro:"memory"`
	Disk   float64 `avro:"disk"`
}

type BatchJobItem struct {
	TaskID  *string `avro:"task_id"`
	Payload string  `avro:"payload"`
}

type SubmitBatchJob struct {
	ClientID     string         `avro:"client_id"`
	BatchJobID   string         `avro:"batch_job_id"`
	Operation    string         `avro:"operation"`
	Items        []BatchJobItem `avro:"items"`
	Parallelism  int64          `avro:"parallelism"`
	Priority     *int64         `avro:"priority"`
	MaxRetries   *int64         `avro:"max_retries"`
	TimeoutMs    *int64         `avro:"timeout_ms"`
	Capabilities []string       `avro:"capabilities"`
	Actor        *string        `avro:"actor"`
}

type AssignmentItem struct {
	TaskID  string `avro:"task_id"`
	Payload string `avro:"payload"`
}

// Assignment is work for an executor (kind task or batch) or a cancel (kind cancel).
type Assignment struct {
	Kind         string           `avro:"kind"`
	ClientID     string           `avro:"client_id"`
	SessionID    *string          `avro:"session_id"`
	Operation    string           `avro:"operation"`
	TaskID       *string          `avro:"task_id"`
	BatchID      *string          `avro:"batch_id"`
	Attempt      int64            `avro:"attempt"`
	FencingToken int64            `avro:"fencing_token"`
	DeadlineAtMs int64            `avro:"deadline_at_ms"`
	TimeoutMs    int64            `avro:"timeout_ms"`
	Priority     int64            `avro:"priority"`
	Items        []AssignmentItem `avro:"items"`
	Reason       *string          `avro:"reason"`
}

// TaskCompleted is a task's outcome on task.completed (and its event on task.events).
type TaskCompleted struct {
	ClientID        string         `avro:"client_id"`
	OccurredAtMs    int64          `avro:"occurred_at_ms"`
	TaskID          string         `avro:"task_id"`
	Operation       string         `avro:"operation"`
	Attempt         int64          `avro:"attempt"`
	SessionID       *string        `avro:"session_id"`
	BatchID         *string        `avro:"batch_id"`
	Output          string         `avro:"output"`
	ExecutionTimeMs int64          `avro:"execution_time_ms"`
	ResourcesUsed   *ResourcesUsed `avro:"resources_used"`
	Quality         *float64       `avro:"quality"`
}

type AttemptRecord struct {
	Attempt   int64   `avro:"attempt"`
	SessionID *string `avro:"session_id"`
	Error     string  `avro:"error"`
	AtMs      int64   `avro:"at_ms"`
}

// TaskFailed is the outcome of every ending but completion on task.failed: Outcome is
// failed, cancelled, rejected or refused.
type TaskFailed struct {
	ClientID     string          `avro:"client_id"`
	OccurredAtMs int64           `avro:"occurred_at_ms"`
	TaskID       string          `avro:"task_id"`
	Operation    string          `avro:"operation"`
	Attempt      int64           `avro:"attempt"`
	Error        string          `avro:"error"`
	Reason       string          `avro:"reason"`
	Attempts     []AttemptRecord `avro:"attempts"`
	Outcome      string          `avro:"outcome"`
}

func (*SubmitTask) RecordName() string       { return "SubmitTask" }
func (*CancelTask) RecordName() string       { return "CancelTask" }
func (*ApproveTask) RecordName() string      { return "ApproveTask" }
func (*RejectTask) RecordName() string       { return "RejectTask" }
func (*ExpediteTask) RecordName() string     { return "ExpediteTask" }
func (*RegisterSession) RecordName() string  { return "RegisterSession" }
func (*ReleaseSession) RecordName() string   { return "ReleaseSession" }
func (*SessionHeartbeat) RecordName() string { return "SessionHeartbeat" }
func (*TaskStarted) RecordName() string      { return "TaskStarted" }
func (*ReportProgress) RecordName() string   { return "ReportProgress" }
func (*ReportResult) RecordName() string     { return "ReportResult" }
func (*SubmitBatchJob) RecordName() string   { return "SubmitBatchJob" }
func (*Assignment) RecordName() string       { return "Assignment" }
func (*TaskCompleted) RecordName() string    { return "TaskCompleted" }
func (*TaskFailed) RecordName() string       { return "TaskFailed" }

// Command is a record produced to task.commands, keyed by its client id.
type Command interface {
	Record
	Client() string
}

func (c *SubmitTask) Client() string       { return c.ClientID }
func (c *CancelTask) Client() string       { return c.ClientID }
func (c *ApproveTask) Client() string      { return c.ClientID }
func (c *RejectTask) Client() string       { return c.ClientID }
func (c *ExpediteTask) Client() string     { return c.ClientID }
func (c *RegisterSession) Client() string  { return c.ClientID }
func (c *ReleaseSession) Client() string   { return c.ClientID }
func (c *SessionHeartbeat) Client() string { return c.ClientID }
func (c *TaskStarted) Client() string      { return c.ClientID }
func (c *ReportProgress) Client() string   { return c.ClientID }
func (c *ReportResult) Client() string     { return c.ClientID }
func (c *SubmitBatchJob) Client() string   { return c.ClientID }

func newRecord(name string) Record {
	switch name {
	case "SubmitTask":
		return &SubmitTask{Metadata: "{}", Tags: []string{}, Steps: []TaskStep{}, Attachments: []TaskAttachment{}}
	case "CancelTask":
		return &CancelTask{}
	case "ApproveTask":
		return &ApproveTask{}
	case "RejectTask":
		return &RejectTask{}
	case "ExpediteTask":
		return &ExpediteTask{}
	case "RegisterSession":
		return &RegisterSession{}
	case "ReleaseSession":
		return &ReleaseSession{}
	case "SessionHeartbeat":
		return &SessionHeartbeat{}
	case "TaskStarted":
		return &TaskStarted{}
	case "ReportProgress":
		return &ReportProgress{}
	case "ReportResult":
		return &ReportResult{}
	case "SubmitBatchJob":
		return &SubmitBatchJob{}
	case "Assignment":
		return &Assignment{}
	case "TaskCompleted":
		return &TaskCompleted{}
	case "TaskFailed":
		return &TaskFailed{}
	}
	return &GenericRecord{Name: name}
}

func ptr[T any](v T) *T { return &v }
