"""Access control of the HTTP view, as an operator meets it: the ``taskstream view`` process.

* bound to a non-loopback address without a token it refuses to start, with one clear line;
* with a token (bound to 0.0.0.0 on a free port, asked on 127.0.0.1 only): no token or a wrong
  one gets 401, the right one 200 -- on the read routes and on the command gateway;
* the token never appears in anything the process printed, at DEBUG level, after requests
  carrying the right and wrong tokens and a task whose payload holds a credential.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from streams.distributor import Distributor
from streams.runtime import run_processor
from streams.secrets import new_key_entry
from streams.settings import Settings

pytestmark = pytest.mark.integration

TOKEN = f"tok-{uuid.uuid4().hex}"
WRONG = f"wrong-{uuid.uuid4().hex}"
PAYLOAD_SECRET = f"sk-live-{uuid.uuid4().hex}"
# The gateway seals payload credentials with it (without one it refuses them).
SECRETS_KEY = new_key_entry("sec")


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSTREAM_")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.update(values)
    return env


def test_view_on_a_public_address_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "view"],
        env=_env(
            TASKSTREAM_HTTP_HOST="0.0.0.0",
            # Never reached: the check comes before any connection.
            KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9",
            TASKSTREAM_DATA_DIR=str(tmp_path),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "0.0.0.0" in lines[0] and "TASKSTREAM_HTTP_TOKEN" in lines[0]
    assert "Traceback" not in done.stderr


@pytest.fixture
def view_process(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> Iterator[tuple[str, Path, Settings]]:
    """``taskstream view`` on 0.0.0.0:0 with a token; yields (base URL on 127.0.0.1, its log,
    the settings it runs with)."""
    s: Settings = make_settings(
        kafka_session_timeout_ms=3000, kafka_heartbeat_interval_ms=300, tick_interval_ms=50
    )
    log_path = tmp_path / "view.log"
    env = _env(
        KAFKA_BOOTSTRAP_SERVERS=str(s.kafka_bootstrap_servers),
        TASKSTREAM_TOPIC_PREFIX=s.topic_prefix,
        TASKSTREAM_PARTITIONS=str(s.partitions),
        TASKSTREAM_DATA_DIR=str(tmp_path / "data"),
        TASKSTREAM_HTTP_HOST="0.0.0.0",
        TASKSTREAM_HTTP_PORT="0",
        TASKSTREAM_HTTP_TOKEN=TOKEN,
        TASKSTREAM_SECRETS_KEY=SECRETS_KEY,
        TASKSTREAM_LOG_LEVEL="DEBUG",
    )
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "view"], env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 60
        port = None
        while port is None:
            assert proc.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, "the view did not start within 60 s"
            found = re.search(r"HTTP view on http://0\.0\.0\.0:(\d+)/", log_path.read_text())
            port = int(found.group(1)) if found else None
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", log_path, s
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


async def test_token_protected_view_401_without_200_with_and_never_logs_it(
    view_process: tuple[str, Path, Settings], caplog: pytest.LogCaptureFixture
) -> None:
    base, log_path, s = view_process
    right = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        for path in ("/status", "/tasks", "/dlq", "/health", "/metrics", "/sessions"):
            assert (await http.get(path)).status_code == 401, path
            wrong = {"Authorization": f"Bearer {WRONG}"}
            assert (await http.get(path, headers=wrong)).status_code == 401
            no_scheme = {"Authorization": TOKEN}
            assert (await http.get(path, headers=no_scheme)).status_code == 401
            answer = await http.get(path, headers=right)
            assert answer.status_code in (200, 503), (path, answer.text)  # 503: health, lagging
        unauthorized = await http.get("/status")
        assert unauthorized.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in unauthorized.text

        # The command gateway sits behind the same token.
        task = {
            "client_id": "sec",
            "task_id": "sec-1",
            "operation": "api_call",
            "payload": {
                "apiEndpoint": "https://api.example.invalid/v1/contacts",
                "apiMethod": "POST",
                "authType": "bearer",
                "bearerToken": PAYLOAD_SECRET,
                "customHeaders": {"X-Api-Key": PAYLOAD_SECRET},
            },
        }
        assert (await http.post("/tasks", json=task)).status_code == 401
        wrong_post = await http.post("/tasks", json=task, headers={"Authorization": WRONG})
        assert wrong_post.status_code == 401
        sent = await http.post("/tasks", json=task, headers=right)
        assert sent.status_code == 202, sent.text

        # A processor decides it; the view then shows the task with its credentials masked.
        stop, ready = asyncio.Event(), asyncio.Event()
        processor = asyncio.create_task(
            run_processor(lambda x: Distributor(x), s, stop=stop, ready=ready)
        )
        try:
            deadline = time.monotonic() + 60
            shown = await http.get("/tasks/sec-1", headers=right)
            while shown.status_code == 404:
                assert time.monotonic() < deadline and not processor.done(), shown.text
                await asyncio.sleep(0.2)
                shown = await http.get("/tasks/sec-1", headers=right)
        finally:
            stop.set()
            await asyncio.wait_for(processor, 20)
        assert shown.status_code == 200, shown.text
        assert PAYLOAD_SECRET not in shown.text
        payload = shown.json()["payload"]
        assert payload["bearerToken"] == "***"
        assert payload["customHeaders"] == {"X-Api-Key": "***"}
        assert payload["apiEndpoint"] == "https://api.example.invalid/v1/contacts"
        listed = await http.get("/tasks", params={"client_id": "sec"}, headers=right)
        assert "sec-1" in listed.text and PAYLOAD_SECRET not in listed.text

    text = log_path.read_text(errors="replace")
    assert "HTTP view on" in text  # the log was captured at all
    for secret in (TOKEN, WRONG, PAYLOAD_SECRET, SECRETS_KEY.split(":")[1]):
        assert secret not in text
        assert secret not in caplog.text
