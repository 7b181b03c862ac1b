/** One root error; typed subclasses with messages written for an operator. */
export class TaskstreamError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bytes that are not a taskstream record (bad header, unknown fingerprint, bad body). */
export class DecodeError extends TaskstreamError {}

/** A value that does not fit its schema. */
export class EncodeError extends TaskstreamError {}

/** A command refused before anything was produced. */
export class InvalidCommandError extends TaskstreamError {}

/** The encoded command is larger than TASKSTREAM_MAX_PAYLOAD_BYTES. */
export class PayloadTooLargeError extends InvalidCommandError {}

/** The topics are missing or do not fit together; the message says what to run or set. */
export class TopicLayoutError extends TaskstreamError {}

/** Kafka could not be reached or refused a request. */
export class BrokerError extends TaskstreamError {}

/** Used after close(), or before start(). */
export class ClientClosedError extends TaskstreamError {}

/** The executor cannot run (bad arguments, a failed background loop). */
export class ExecutorError extends TaskstreamError {}

/** A handler failed a task on purpose; the message becomes the reported error. */
export class HandlerError extends TaskstreamError {}
