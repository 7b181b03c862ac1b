"""One settings class for every taskstream process, read from the environment.

Variables carry the prefix ``TASKSTREAM_`` (``TASKSTREAM_HTTP_PORT``), except the standard
``KAFKA_BOOTSTRAP_SERVERS``. Secrets are ``SecretStr`` so dumps and logs print them masked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.catalog import PRIORITY_NAMES, parse_rate_limit
from streams.domain.config import DEFAULTS as DOMAIN
from streams.domain.config import DispatchStrategy


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TASKSTREAM_", frozen=True, extra="ignore")

    # Kafka
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "KAFKA_BOOTSTRAP_SERVERS", "TASKSTREAM_KAFKA_BOOTSTRAP_SERVERS"
        ),
        description="Kafka cluster to use; unset starts the embedded broker.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None

    topic_prefix: str = "task"
    partitions: int = Field(default=8, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    group_id: str = "taskstream-processor"
    kafka_session_timeout_ms: int = Field(
        default=10_000, ge=1000, description="Consumer-group session timeout (fail-over time)."
    )
    kafka_heartbeat_interval_ms: int = Field(default=1_000, ge=100)
    instance_id: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[A-Za-z0-9._:-]*$",
        description=(
            "Stable name of this instance of a part (a pod or host name): its consumer group "
            "member is static (group.instance.id = part-name), so a restart resumes at once "
            "instead of waiting for the old member to expire. Two instances of one part running "
            "at once must not share it. Unset or empty: an id kept and locked in the data dir."
        ),
    )
    kafka_broker: Literal["auto", "kafka", "embedded"] = Field(
        default="auto",
        description=(
            "What the broker is: asked once per process (auto), or said. Apache Kafka gets the "
            "idempotent producer and no workarounds; the embedded broker gets its workarounds."
        ),
    )
    kafka_idle_fetch_max_wait_ms: int = Field(
        default=100,
        ge=1,
        description=(
            "Longest an idle fetch waits at a broker that answers as soon as a record is there "
            "(Apache Kafka): it adds no latency, it bounds how often an idle consumer asks."
        ),
    )
    kafka_fetch_max_wait_ms: int = Field(
        default=20,
        ge=1,
        description=(
            "Longest a fetch waits at a broker that holds every fetch for its full wait (the "
            "embedded one), on the hot path (processor commands, executor work): the floor of "
            "each hop's latency there."
        ),
    )
    kafka_background_fetch_max_wait_ms: int = Field(
        default=250,
        ge=1,
        description=(
            "The same for consumers off the hot path (projector, delay agents, outcome "
            "readers): fewer empty fetches when idle, a little more lag."
        ),
    )

    # Local state
    data_dir: Path = Path("data")

    # Domain (defaults: streams.domain.config.DomainConfig)
    operations_file: Path | None = None
    batch_window_ms: int = Field(default=DOMAIN.batch_window_ms, ge=0)
    max_batch_size: int = Field(default=DOMAIN.max_batch_size, ge=1)
    max_retries: int = Field(default=DOMAIN.max_retries, ge=0)
    retry_base_ms: int = Field(default=DOMAIN.retry_base_ms, ge=1)
    retry_max_ms: int = Field(default=DOMAIN.retry_max_ms, ge=1)
    session_stale_ms: int = Field(default=DOMAIN.session_stale_ms, ge=1)
    default_timeout_ms: int = Field(default=DOMAIN.default_timeout_ms, ge=1)
    aging_step_ms: int = Field(default=DOMAIN.aging_step_ms, ge=1)
    circuit_cooldown_ms: int = Field(
        default=DOMAIN.circuit_cooldown_ms,
        ge=0,
        description="How long an open session circuit waits before a probe.",
    )
    session_healthy_above: float = Field(
        default=DOMAIN.session_healthy_above,
        ge=0.0,
        le=1.0,
        description="A session whose health score is above this is healthy.",
    )
    session_unhealthy_below: float = Field(
        default=DOMAIN.session_unhealthy_below,
        ge=0.0,
        le=1.0,
        description="Below this a session is unhealthy and its circuit opens (between: degraded).",
    )
    session_reuse_threshold: float = Field(
        default=DOMAIN.session_reuse_threshold,
        ge=0.0,
        le=1.0,
        description=(
            "A session whose health score is below this is not reused while another session "
            "of its client can take the work; with none, it takes one unit at a time."
        ),
    )
    session_probe_recovery_score: float = Field(
        default=DOMAIN.session_probe_recovery_score,
        ge=0.0,
        le=1.0,
        description="The health score at least restored by a successful half-open probe.",
    )
    max_workload: float = Field(
        default=DOMAIN.max_workload,
        gt=0.0,
        le=1.0,
        description=(
            "A session whose agent reported a workload (0..1) at or above this gets no new work."
        ),
    )
    dispatch_strategy: DispatchStrategy = DOMAIN.dispatch_strategy
    tick_interval_ms: int = Field(default=DOMAIN.tick_interval_ms, ge=10)
    max_clock_skew_ms: int = Field(
        default=5_000,
        ge=0,
        description=(
            "How far ahead of the processor's clock a command's record time may be: a command "
            "is decided at its record time clamped to the processor's clock plus this, so a "
            "producer with a fast clock moves its partition's time by at most this much."
        ),
    )
    max_payload_bytes: int = Field(
        default=DOMAIN.max_payload_bytes,
        ge=1024,
        description="Largest command record (and task payload) accepted, in bytes.",
    )
    max_queued_per_client: int = Field(
        default=DOMAIN.max_queued_per_client,
        ge=1,
        description="Unfinished tasks one client may have; a SubmitTask beyond is rejected.",
    )
    task_retention_ms: int = Field(
        default=DOMAIN.task_retention_ms,
        ge=60_000,
        description=(
            "How long the processor remembers a finished task (and a completed batch job) "
            "after it finished: the window in which a repeated SubmitTask of its id is "
            "ignored as a redelivery. After it the id is forgotten and may be used again."
        ),
    )
    client_rate_limit: str = Field(
        default="100/10s",
        description=(
            "Each client's token bucket: <count>/<period> (100/10s, 5/s, 200000/1d) or none. "
            "Work over it waits, it does not fail; the catalog's [clients.<id>] rate_limit "
            "overrides it per client, an operation's rate_limit adds a bucket of its own."
        ),
    )
    sla_ms: dict[str, int] = Field(
        default_factory=dict,
        description=(
            "Queue-wait SLAs by priority name, in ms, as JSON, over the seed's defaults "
            "(critical 60000, high 300000, normal 1800000, low 7200000, background 86400000): "
            '{"critical": 30000}. A task waiting longer records task.sla_breached while it waits.'
        ),
    )

    @model_validator(mode="after")
    def _health_bounds_ordered(self) -> Settings:
        if self.session_unhealthy_below > self.session_healthy_above:
            raise ValueError(
                f"session_unhealthy_below ({self.session_unhealthy_below}) must not be above "
                f"session_healthy_above ({self.session_healthy_above})"
            )
        return self

    @field_validator("client_rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        parse_rate_limit(value)  # a clear ValueError naming the accepted forms
        return value

    @field_validator("sla_ms")
    @classmethod
    def _sla_names(cls, value: dict[str, int]) -> dict[str, int]:
        names = set(PRIORITY_NAMES.values())
        for name, ms in value.items():
            if name not in names:
                raise ValueError(f"unknown priority {name!r} in sla_ms: one of {sorted(names)}")
            if ms < 1:
                raise ValueError(f"sla_ms[{name!r}] must be at least 1 ms, got {ms}")
        return value

    starved_after_ms: int = Field(
        default=DOMAIN.starved_after_ms,
        ge=0,
        description=(
            "How long a client's oldest work may wait with no usable session (or no pool "
            "capacity) before the client is reported starved (client.starved)."
        ),
    )

    # HTTP view
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    # /health and /metrics of the processor, delay agent and worker (``streams.observe``):
    # off unless a port is given; 0 picks a free port and logs it.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    http_token: SecretStr | None = Field(
        default=None, description="A bearer token with admin scope on every client."
    )
    actor: str | None = Field(
        default=None,
        max_length=200,
        description=(
            "Who this process's SDK and CLI commands say sent them (shown in task history); "
            "unset: <user>@<host>. The HTTP gateway names the caller's token instead."
        ),
    )
    secrets_key: SecretStr | None = Field(
        default=None,
        description=(
            "Key ring that seals payload credentials before they are produced and opens them "
            "in executors: kid:base64key entries, comma separated, the first seals "
            "(python -m streams.secrets new-key k1). Unset: a payload with a credential is "
            "refused."
        ),
    )
    webhook_rules_file: Path | None = Field(
        default=None,
        description=(
            "TOML rules that turn inbound webhook messages (POST /webhooks/{source}) into "
            "tasks: per source its signature secret variable, message id, client id and rules "
            "(streams/webhooks/rules.py). Unset: /webhooks answers 404."
        ),
    )
    http_tokens_file: Path | None = Field(
        default=None,
        description=(
            "TOML file of per-client tokens (digest -> name, clients, scopes); see "
            "api/access.py and the README's security section."
        ),
    )

    # Built-in handlers (streams/executor/handlers/builtin.py)
    ghl_base_url: str = Field(
        default="https://services.leadconnectorhq.com",
        description="GoHighLevel API v2 base URL (the GHL handlers and ghl_action).",
    )
    ghl_credentials_file: Path | None = Field(
        default=None,
        description=(
            "TOML (or .json) file of per-client GoHighLevel credentials: [<client id>] "
            "location_id and token (a private integration or OAuth token of the sub-account)."
        ),
    )
    ghl_timeout_ms: int = Field(default=30_000, ge=1)
    notification_webhook_url: str | None = Field(
        default=None,
        description="Where notification/reminder tasks that name only a recipient are posted.",
    )
    webhook_timeout_ms: int = Field(
        default=10_000, ge=1, description="Timeout of notification and notify_on_* webhook posts."
    )
    notify_max_attempts: int = Field(
        default=6,
        ge=1,
        le=20,
        description=(
            "The notifier's tries of one outcome notice (5xx, 408, 429 and transport errors are "
            "retried; other answers end it) before it logs the notice as given up."
        ),
    )
    notify_backoff_ms: int = Field(
        default=500,
        ge=1,
        description="The notifier's wait before its first retry of a notice; doubles, to 30 s.",
    )
    outbound_allow: str = Field(
        default="",
        description=(
            "IP addresses and CIDR networks (comma or space separated) that api_call, webhooks "
            "and the GoHighLevel handlers may reach although they are not public: loopback, private, "
            "link-local and reserved destinations are refused otherwise, after DNS resolution "
            "and on every redirect."
        ),
    )

    log_level: str = "INFO"

    def topic(self, name: str) -> str:
        """Full topic name for a logical name such as ``events`` or ``retry.4s``."""
        return f"{self.topic_prefix}.{name}"


def retry_tier_name(tier_ms: int) -> str:
    """Logical topic name of a delay tier (``streams.domain.retry``), e.g. ``retry.4s``."""
    return f"retry.{tier_ms // 1000}s"
