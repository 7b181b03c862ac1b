package taskstream

import (
	"errors"
	"fmt"
)

// Error is the root of every error this SDK returns (like the Python TaskstreamError).
var Error = errors.New("taskstream")

// EncodeError: a value does not fit its schema.
type EncodeError struct {
	Record string
	Err    error
}

func (e *EncodeError) Error() string   { return fmt.Sprintf("cannot encode %s: %v", e.Record, e.Err) }
func (e *EncodeError) Unwrap() []error { return []error{Error, e.Err} }

// DecodeError: bytes that are not a record this SDK knows.
type DecodeError struct {
	Record string
	Reason string
}

func (e *DecodeError) Error() string {
	if e.Record != "" {
		return fmt.Sprintf("cannot decode %s: %s", e.Record, e.Reason)
	}
	return "cannot decode record: " + e.Reason
}
func (e *DecodeError) Unwrap() error { return Error }

// InvalidCommandError: a command that would be refused, caught before it is produced.
type InvalidCommandError struct{ Reason string }

func (e *InvalidCommandError) Error() string { return "invalid command: " + e.Reason }
func (e *InvalidCommandError) Unwrap() error { return Error }

// PayloadTooLargeError: the encoded command is over TASKSTREAM_MAX_PAYLOAD_BYTES.
type PayloadTooLargeError struct {
	Record, ClientID string
	Size, Limit      int
}

func (e *PayloadTooLargeError) Error() string {
	return fmt.Sprintf("%s for client %q is %d bytes encoded; the limit is %d "+
		"(TASKSTREAM_MAX_PAYLOAD_BYTES). Store large inputs elsewhere and pass a reference.",
		e.Record, e.ClientID, e.Size, e.Limit)
}
func (e *PayloadTooLargeError) Unwrap() error { return Error }

// TopicLayoutError: the topics are missing or do not fit together; the message says what to
// run or set.
type TopicLayoutError struct{ Problems []string }

func (e *TopicLayoutError) Error() string {
	text := "topic layout: "
	for i, p := range e.Problems {
		if i > 0 {
			text += "; "
		}
		text += p
	}
	return text
}
func (e *TopicLayoutError) Unwrap() error { return Error }

// BrokerError wraps an error of the Kafka client.
type BrokerError struct {
	Op  string
	Err error
}

func (e *BrokerError) Error() string   { return fmt.Sprintf("%s: %v", e.Op, e.Err) }
func (e *BrokerError) Unwrap() []error { return []error{Error, e.Err} }

// ErrClosed: the client or executor is closed.
var ErrClosed = fmt.Errorf("%w: closed", Error)
