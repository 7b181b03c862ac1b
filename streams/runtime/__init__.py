"""The partitioned stream runtime: runs any decider over a command topic with an event log.

Public API: :func:`run_processor`, :func:`main_process`, :class:`StreamRuntime`; the contract
an application implements is :class:`streams.runtime.protocol.Application`.
"""

from streams.runtime.runner import AppFactory, StreamRuntime, main_process, run_processor

__all__ = ["AppFactory", "StreamRuntime", "main_process", "run_processor"]
