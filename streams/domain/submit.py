"""SubmitTask and SubmitBatchJob: the one door a task comes in through.

The submit is checked against the catalog and the limits, resolved to its defaults
(``TaskAccepted`` carries every decided value) and admitted (``lifecycle.admit``); a batch
job's children are checked like single tasks against its child spec (``batch_jobs``).
"""

from __future__ import annotations

from schemas import commands as cmd
from schemas.credentials import credentials, describe
from schemas.events import TaskAccepted, TaskPendingReview
from streams.domain import batch_jobs, lifecycle, submission, templates
from streams.domain.context import Decision
from streams.domain.dispatch import dispatch
from streams.domain.refusals import reject_task
from streams.domain.spec import spec_digest


def accepted_event(ctx: Decision, c: cmd.SubmitTask, depends_on: list[str]) -> TaskAccepted | str:
    """The TaskAccepted a submit stands for, or the reason it cannot be accepted."""
    cfg = ctx.config
    spec = cfg.catalog.get(c.operation)
    problems = submission.spec_problems(c, cfg.catalog)
    if spec is None or problems:
        return problems[0]
    plaintext = next(credentials(c.payload), None) or next(
        (found for s in c.steps for found in credentials(s.config)), None
    )
    if plaintext is not None:
        # A producer that skipped the SDK's sealing: refused, and not recorded anywhere.
        return (
            f"{describe(plaintext[0])} holds a credential in plaintext: submit through the SDK "
            "or the gateway with TASKSTREAM_SECRETS_KEY set, which seal it"
        )
    return TaskAccepted(
        client_id=c.client_id,
        task_id=c.task_id,
        occurred_at_ms=ctx.now,
        operation=c.operation,
        payload=c.payload,
        priority=c.priority if c.priority is not None else spec.urgency,
        explicit_priority=c.priority is not None,
        max_retries=c.max_retries if c.max_retries is not None else cfg.max_retries,
        timeout_ms=c.timeout_ms if c.timeout_ms is not None else cfg.default_timeout_ms,
        scheduled_for_ms=submission.start_time_ms(c),
        requires_review=c.requires_review,
        depends_on=depends_on,
        capabilities=list(dict.fromkeys(c.capabilities)),
        batchable=spec.batchable and c.assigned_to is None,
        # An assigned task goes to that agent's or session's sessions, never to the pool.
        session_required=spec.session_required or c.assigned_to is not None,
        actor=c.actor,
        title=c.title,
        description=c.description,
        tags=list(dict.fromkeys(c.tags)),
        metadata=c.metadata,
        due_at_ms=c.due_at_ms,
        assigned_to=c.assigned_to,
        steps=c.steps,
        attachments=c.attachments,
    )


def _dependency_problem(ctx: Decision, c: cmd.SubmitTask, depends_on: list[str]) -> str | None:
    st = ctx.state
    for dep_id in depends_on:
        if not dep_id:
            return "invalid depends_on: empty task id"
        if dep_id == c.task_id:
            return "a task cannot depend on itself"
        dep = st.task(dep_id)
        if dep is not None and dep.client_id != c.client_id:
            return f"dependency {dep_id} belongs to another client"
    # A cycle can only close through tasks already known: walk their dependencies.
    seen: set[str] = set()
    stack = list(depends_on)
    while stack:
        dep_id = stack.pop()
        if dep_id == c.task_id:
            return "dependency cycle"
        if dep_id in seen:
            continue
        seen.add(dep_id)
        dep = st.task(dep_id)
        if dep is not None:
            stack.extend(dep.depends_on)
    return None


def submit(ctx: Decision, c: cmd.SubmitTask) -> None:
    resolved = templates.with_template(ctx, c)  # a named template's defaults first
    if isinstance(resolved, str):
        reject_task(ctx, c, c.task_id, resolved)
        return
    c = resolved
    depends_on = list(dict.fromkeys(c.depends_on))
    accepted = accepted_event(ctx, c, depends_on)
    existing = ctx.state.task(c.task_id)
    if existing is not None:
        same = (
            existing.client_id == c.client_id
            and isinstance(accepted, TaskAccepted)
            and spec_digest(accepted) == existing.spec_digest
        )
        if not same:
            reject_task(ctx, c, c.task_id, "duplicate task_id with a different specification")
        return  # an identical resubmit is a redelivery: nothing happens
    # Too large first: a payload over the limit is refused for its size, whatever it holds.
    too_large = submission.payload_size_problem(c, ctx.config.max_payload_bytes)
    if too_large is not None:
        reject_task(ctx, c, c.task_id, too_large)
        return
    if isinstance(accepted, str):
        reject_task(ctx, c, c.task_id, accepted)
        return
    problem = _dependency_problem(ctx, c, depends_on)
    if problem is not None:
        reject_task(ctx, c, c.task_id, problem)
        return
    unfinished = ctx.state.open_tasks.get(c.client_id, 0)
    if unfinished >= ctx.config.max_queued_per_client:
        reject_task(
            ctx,
            c,
            c.task_id,
            f"queue full: client {c.client_id!r} has {unfinished} unfinished tasks, "
            f"the limit is {ctx.config.max_queued_per_client} (TASKSTREAM_MAX_QUEUED_PER_CLIENT)",
        )
        return
    ctx.emit(accepted)
    if c.requires_review:
        ctx.emit(
            TaskPendingReview(client_id=c.client_id, task_id=c.task_id, occurred_at_ms=ctx.now)
        )
    else:
        lifecycle.admit(ctx, c.task_id, "submitted")
    dispatch(ctx, c.client_id)


def submit_batch_job(ctx: Decision, c: cmd.SubmitBatchJob) -> None:
    """Children are validated like single tasks: check a SubmitTask of the job's child spec."""
    template = accepted_event(
        ctx,
        cmd.SubmitTask(
            client_id=c.client_id,
            task_id=c.batch_job_id,
            operation=c.operation,
            # The first item stands for the config check; batch_jobs checks every item's.
            payload=c.items[0].payload if c.items else {},
            priority=c.priority,
            max_retries=c.max_retries,
            timeout_ms=c.timeout_ms,
            capabilities=c.capabilities,
        ),
        [],
    )
    batch_jobs.submit(ctx, c, template)
