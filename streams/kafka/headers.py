"""The Kafka record headers taskstream writes and reads: one home for their names and formats.

- ``CAUSE_HEADER`` (``ts-cause``), on every event record: which input caused it.
  ``c:<partition>:<offset>:<index>:<count>:<at_ms>`` for a command at that offset of the command
  topic decided at ``at_ms`` (``streams.runtime.clock``), ``t:<tick_ms>:<index>:<count>`` for a
  timer tick fed to the decider at ``tick_ms`` (``streams.runtime.causation`` reads it).
- ``TYPE_HEADER`` (``ts-type``): the record type's name (informational; the Avro fingerprint is
  authoritative).
- ``HOME_HEADER`` (``ts-home``), on every side record: the ``task.commands`` partition replies to
  it go to, ASCII decimal (``streams.kafka.routing``).
- ``FORWARDED_HEADER`` (``ts-forwarded``), on a command the processor forwarded home:
  ``<partition>:<offset>`` it arrived at first.
- ``OUTPUT_ID_HEADER`` (``ts-out``), on every staged side record: its unique id, by which
  recovery finds the records a crash left unsent (``streams.runtime.staging``).
- ``NOTIFY_HEADER`` (``ts-notify``), on an outcome record (``task.completed`` / ``task.failed``)
  of a task that asked for a notice of that outcome (``streams.domain.notices``): JSON of its
  target, ``{"url": <the notifyWebhookUrl, or its sealed value>}``; the notifier part
  (``streams.notifier``) sends the notice.
"""

from __future__ import annotations

__all__ = [
    "CAUSE_HEADER",
    "FORWARDED_HEADER",
    "HOME_HEADER",
    "NOTIFY_HEADER",
    "OUTPUT_ID_HEADER",
    "TYPE_HEADER",
]

CAUSE_HEADER = "ts-cause"
TYPE_HEADER = "ts-type"
HOME_HEADER = "ts-home"
FORWARDED_HEADER = "ts-forwarded"
OUTPUT_ID_HEADER = "ts-out"
NOTIFY_HEADER = "ts-notify"
