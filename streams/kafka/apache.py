"""A local Apache Kafka 4.x: a single-node KRaft broker+controller on loopback.

The broker's jars come from Maven Central through ``tools/kafka/pom.xml`` (``mvn
dependency:copy-dependencies`` into the git-ignored ``tools/kafka/lib``); :func:`ensure_jars`
runs Maven when they are missing. :class:`ApacheKafka` formats KRaft storage on first start,
runs ``kafka.Kafka`` on free loopback ports (the same ones again after a restart, when they are
free, so clients that remember the address keep working), waits until the broker answers a
Metadata request naming itself, logs to a file, and is always stopped: on exit, on an
exception, on Ctrl-C (the context manager's ``finally``), and when the parent is killed
outright (``PR_SET_PDEATHSIG``). Its log directory lives under the given data directory and
survives a restart; a data directory of ``None`` means a temporary one, removed on stop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from streams.errors import BrokerError
from streams.kafka.process import BrokerProcess, die_with_parent, free_loopback_port, kafka_request

__all__ = ["ApacheKafka", "KAFKA_TOOLS_DIR", "ensure_jars", "java_binary"]

log = logging.getLogger(__name__)

# tools/kafka beside the packages in a checkout (the launcher is for development and tests; a
# deployment brings its own cluster). TASKSTREAM_KAFKA_TOOLS_DIR points elsewhere.
KAFKA_TOOLS_DIR = Path(
    os.environ.get("TASKSTREAM_KAFKA_TOOLS_DIR")
    or Path(__file__).resolve().parents[2] / "tools" / "kafka"
)
MIN_JAVA = 17
_NODE_ID = 1

# Broker settings for one node on loopback. Internal topics have one replica; a new group
# starts at once (no 3 s initial rebalance delay); segments and indexes stay small because
# tests make many short-lived topics; group session bounds admit the short sessions the
# tests and fast fail-over use. Everything else is Kafka's default.
_BROKER_CONFIG = {
    "process.roles": "broker,controller",
    "node.id": str(_NODE_ID),
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "1000",
    "num.partitions": "1",
    "auto.create.topics.enable": "true",
    "delete.topic.enable": "true",
    "log.segment.bytes": str(64 * 1024 * 1024),
    "log.index.size.max.bytes": str(1024 * 1024),
    "num.network.threads": "2",
    "num.io.threads": "4",
    "num.recovery.threads.per.data.dir": "2",
}

_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
logger.request.name = kafka.request.logger
logger.request.level = warn
"""


def java_binary() -> str:
    """The ``java`` to run the broker with: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    candidate = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not candidate or not os.access(candidate, os.X_OK):
        raise BrokerError(
            f"Apache Kafka needs Java {MIN_JAVA} or newer: no java on PATH and no JAVA_HOME"
        )
    out = subprocess.run([candidate, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):  # "1.8.0_…"
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise BrokerError(f"Apache Kafka 4 needs Java {MIN_JAVA} or newer; {candidate} is {major}")
    return candidate


def _lib_dir(tools_dir: Path) -> Path:
    return tools_dir / "lib"


def _has_jars(tools_dir: Path) -> bool:
    lib = _lib_dir(tools_dir)
    return lib.is_dir() and any(lib.glob("kafka_2.13-*.jar")) and any(lib.glob("kafka-clients-*"))


def ensure_jars(tools_dir: Path = KAFKA_TOOLS_DIR, *, quiet: bool = True) -> Path:
    """The folder holding the broker's jars, fetched with Maven first when they are missing."""
    if _has_jars(tools_dir):
        return _lib_dir(tools_dir)
    pom = tools_dir / "pom.xml"
    if not pom.is_file():
        raise BrokerError(
            f"no Apache Kafka jars in {_lib_dir(tools_dir)} and no {pom} to fetch them with"
        )
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            f"no Apache Kafka jars in {_lib_dir(tools_dir)}; install Maven (mvn) to fetch them "
            f"from Maven Central, or run: mvn -f {pom} dependency:copy-dependencies"
        )
    log.info("fetching Apache Kafka's jars with Maven (%s)", pom)
    command = [mvn, "-B", "-f", str(pom), "dependency:copy-dependencies"]
    if quiet:
        command.insert(2, "-q")
    result = subprocess.run(command, capture_output=quiet, text=True, check=False)
    if result.returncode != 0 or not _has_jars(tools_dir):
        tail = (result.stdout or "")[-2000:] + (result.stderr or "")[-2000:] if quiet else ""
        raise BrokerError(
            f"mvn could not fetch Apache Kafka's jars (exit {result.returncode})\n{tail}"
        )
    return _lib_dir(tools_dir)


def _metadata_names_broker(host: str, port: int, node_id: int) -> bool:
    """True when the broker answers Metadata v1 with itself among the brokers: it has caught
    up with the controller and serves clients (ApiVersions alone comes earlier)."""
    # Metadata v1: api_key=3, version=1, correlation_id=7, client_id="ts", topics=[] (none)
    data = kafka_request(host, port, struct.pack(">hhih2si", 3, 1, 7, 2, b"ts", 0))
    if data is None or len(data) < 12 or struct.unpack(">i", data[:4])[0] != 7:
        return False
    (count,) = struct.unpack(">i", data[4:8])
    offset = 8
    for _ in range(max(count, 0)):
        if offset + 4 > len(data):
            return False
        if struct.unpack(">i", data[offset : offset + 4])[0] == node_id:
            return True
        offset += 4
        (host_len,) = struct.unpack(">h", data[offset : offset + 2])
        offset += 2 + max(host_len, 0) + 4  # host, port
        (rack_len,) = struct.unpack(">h", data[offset : offset + 2])
        offset += 2 + max(rack_len, 0)
    return False


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class ApacheKafka(BrokerProcess):
    """One Apache Kafka (KRaft, combined broker and controller) on loopback.

    ``data_dir`` holds the log directory, the configuration and the chosen ports; it survives
    a restart. ``None`` makes a temporary one that :meth:`stop` removes. Use as a (sync)
    context manager.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        port: int | None = None,
        log_path: Path | None = None,
        tools_dir: Path = KAFKA_TOOLS_DIR,
        heap: str = "1g",
        extra_config: dict[str, str] | None = None,
    ) -> None:
        self._temporary = data_dir is None
        self.data_dir = (data_dir or Path(tempfile.mkdtemp(prefix="taskstream-kafka-"))).resolve()
        self.host = "127.0.0.1"
        self.tools_dir = tools_dir
        self.heap = heap
        self.extra_config = dict(extra_config or {})
        self.log_path = log_path or self.data_dir / "kafka.log"
        self._requested_port = port
        self.port = 0
        self.controller_port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    # -- start -------------------------------------------------------------------------------

    def _choose_ports(self) -> None:
        """The ports of the last start when they are free (clients remember the address),
        else new ones; the chosen pair is written beside the logs."""
        remembered = self.data_dir / "ports.json"
        previous: dict[str, int] = {}
        with contextlib.suppress(OSError, ValueError):
            previous = json.loads(remembered.read_text())
        broker = self._requested_port or previous.get("broker") or 0
        if not broker or not _port_free(broker):
            if self._requested_port:
                raise BrokerError(f"port {self._requested_port} is taken")
            broker = free_loopback_port()
        controller = previous.get("controller") or 0
        if not controller or controller == broker or not _port_free(controller):
            controller = free_loopback_port()
            while controller == broker:
                controller = free_loopback_port()
        self.port, self.controller_port = broker, controller
        remembered.write_text(json.dumps({"broker": broker, "controller": controller}))

    def _write_config(self) -> Path:
        config = {
            **_BROKER_CONFIG,
            "listeners": (
                f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.quorum.voters": f"{_NODE_ID}@{self.host}:{self.controller_port}",
            "log.dirs": str(self.data_dir / "logs"),
            **self.extra_config,
        }
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in config.items()))
        (self.data_dir / "log4j2.properties").write_text(_LOG4J2)
        return path

    def _java_command(self, java: str, lib: Path, main: str, *args: str) -> list[str]:
        return [
            java,
            f"-Xms{min(256, _megabytes(self.heap))}m",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp",
            f"{lib}/*",
            main,
            *args,
        ]

    def _format(self, java: str, lib: Path, config: Path) -> None:
        if (self.data_dir / "logs" / "meta.properties").exists():
            return
        cluster_id = _cluster_id()
        result = subprocess.run(
            self._java_command(
                java, lib, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BrokerError(
                f"formatting KRaft storage failed: {(result.stdout + result.stderr)[-1500:]}"
            )
        log.info("formatted KRaft storage in %s (cluster %s)", self.data_dir / "logs", cluster_id)

    def start(self, timeout_s: float = 60.0) -> None:
        java = java_binary()
        lib = ensure_jars(self.tools_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._choose_ports()
        config = self._write_config()
        self._format(java, lib, config)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logfile = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        try:
            self._proc = subprocess.Popen(
                self._java_command(java, lib, "kafka.Kafka", str(config)),
                stdout=logfile,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        finally:
            logfile.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise BrokerError(f"Apache Kafka exited with code {code}; see {self.log_path}")
            if _metadata_names_broker(self.host, self.port, _NODE_ID):
                log.info(
                    "Apache Kafka ready at %s (log: %s)", self.bootstrap_servers, self.log_path
                )
                return
            time.sleep(0.1)
        self.stop()
        raise BrokerError(
            f"Apache Kafka did not answer within {timeout_s:.0f}s; see {self.log_path}"
        )

    # -- stop --------------------------------------------------------------------------------

    def stop(self, timeout_s: float = 15.0) -> None:
        """Controlled shutdown (SIGTERM), SIGKILL after ``timeout_s``; a temporary data
        directory is removed. (:meth:`kill` leaves the data directory.)"""
        super().stop(timeout_s)
        if self._temporary:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (as
    ``kafka-storage random-uuid`` prints)."""
    import base64

    while True:  # like Kafka's Uuid.randomUuid: an id that starts with "-" reads as an option
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _megabytes(size: str) -> int:
    match = re.fullmatch(r"(\d+)([kmgKMG]?)", size)
    if not match:
        raise BrokerError(f"not a heap size: {size!r} (say 512m or 1g)")
    value, unit = int(match.group(1)), match.group(2).lower()
    return {"k": value // 1024, "m": value, "g": value * 1024, "": value // (1024 * 1024)}[unit]
