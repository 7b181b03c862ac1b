"""An executor as an OS process of its own, for tests that SIGKILL it:
``python -m tests.support.executor_process '<settings json>' SESSION CLIENT SLEEP_S``.

It serves one session (``max_concurrent=1``) with a handler for every operation that sleeps
``SLEEP_S`` seconds and returns the process id, so a test can tell which start ran a task.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any

from streams.executor import Executor, SessionSpec, TaskContext
from streams.runtime.signals import run_part
from streams.settings import Settings


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s [{os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )
    settings = Settings(**json.loads(args[0]))
    session_id, client_id, sleep_s = args[1], args[2], float(args[3])

    async def work(ctx: TaskContext) -> dict[str, Any]:
        await asyncio.sleep(sleep_s)
        return {"pid": os.getpid()}

    async def body(stop: asyncio.Event) -> None:
        executor = Executor(
            settings,
            sessions=[SessionSpec(session_id, client_id, "agent-kill", max_concurrent=1)],
            handlers={},
            default_handler=work,
        )
        await executor.start()
        print(f"incarnation {executor.incarnation}", flush=True)
        waiting = asyncio.create_task(executor.wait())
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({waiting, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
            stopper.cancel()
            await executor.stop(drain_timeout_s=1)

    return run_part(body, name="executor", grace_s=10.0)


if __name__ == "__main__":
    sys.exit(main())
