// taskstream dashboard: renders the snapshots the view pushes on /live (server-sent events).
// No dependencies, no build step. Data is only ever written with textContent.
"use strict";

(() => {
  const TOKEN_KEY = "taskstream.token";
  const PRIORITIES = ["critical", "high", "normal", "low", "background"];
  const TERMINAL = new Set(["completed", "failed", "cancelled", "rejected"]);
  const HISTORY_MS = 10 * 60 * 1000;
  const RETRY_MS = 3000;
  const STALE_MS = 5000;
  const TRACK_LIMIT = 8;

  const $ = (selector) => document.querySelector(selector);
  const $$ = (selector) => Array.from(document.querySelectorAll(selector));

  let source = null;
  let snapshot = null;
  let lastMessageAt = 0;
  let retryTimer = null;
  let refreshing = false;
  let lastRefresh = 0;
  const tracked = new Map(); // task_id -> {state, origin, link}
  const selected = new Set();
  const requested = new Set(); // dead letters whose redrive was accepted, not yet projected

  // ---------------------------------------------------------------------------------------
  // helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key.startsWith("data-")) node.setAttribute(key, String(value));
      else if (key === "title") node.title = String(value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function fmtNumber(n) {
    return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
  }

  function fmtRate(r) {
    return r === null || r === undefined ? "–" : `${(r * 100).toFixed(1)} %`;
  }

  function fmtMs(ms) {
    if (ms === null || ms === undefined) return "–";
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
    if (ms < 3600000) return `${(ms / 60000).toFixed(1)} min`;
    return `${(ms / 3600000).toFixed(1)} h`;
  }

  function fmtTime(ms) {
    const d = new Date(ms);
    const pad = (n, w = 2) => String(n).padStart(w, "0");
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function authHeaders(extra) {
    const headers = Object.assign({}, extra || {});
    const t = token();
    if (t) headers.Authorization = `Bearer ${t}`;
    return headers;
  }

  class AuthError extends Error {}

  async function api(path, options = {}) {
    const response = await fetch(path, {
      ...options,
      headers: authHeaders(options.headers),
      cache: "no-store",
    });
    if (response.status === 401) {
      askToken(Boolean(token()));
      throw new AuthError("token required");
    }
    return response;
  }

  async function detailOf(response) {
    try {
      const body = await response.json();
      if (typeof body.detail === "string") return body.detail;
      if (Array.isArray(body.detail)) {
        return body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
      }
      return JSON.stringify(body);
    } catch (_) {
      return `HTTP ${response.status}`;
    }
  }

  function say(node, text, kind) {
    node.textContent = text;
    node.dataset.kind = kind || "";
  }

  // ---------------------------------------------------------------------------------------
  // connection

  function setConnection(state, label) {
    const pill = $("#conn");
    pill.dataset.state = state;
    pill.textContent = label;
  }

  function showBanner(level, message) {
    const banner = $("#banner");
    if (!message) {
      banner.hidden = true;
      banner.textContent = "";
      banner.dataset.level = "ok";
      return;
    }
    banner.hidden = false;
    banner.dataset.level = level;
    banner.textContent = message;
  }

  function scheduleRetry() {
    if (retryTimer !== null) return;
    retryTimer = setTimeout(() => {
      retryTimer = null;
      start();
    }, RETRY_MS);
  }

  function closeStream() {
    if (source !== null) {
      source.close();
      source = null;
    }
  }

  async function start() {
    closeStream();
    let response;
    try {
      response = await api("/dashboard/snapshot");
    } catch (error) {
      if (error instanceof AuthError) return;
      setConnection("offline", "offline");
      showBanner("error", "The view does not answer: the projector process may be down or unreachable. Retrying…");
      scheduleRetry();
      return;
    }
    if (!response.ok) {
      setConnection("offline", "offline");
      showBanner("error", `The view answered HTTP ${response.status}: ${await detailOf(response)}. Retrying…`);
      scheduleRetry();
      return;
    }
    render(await response.json());
    loadOperations();
    openStream();
  }

  function openStream() {
    const t = token();
    const url = t ? `/live?token=${encodeURIComponent(t)}` : "/live";
    const stream = new EventSource(url);
    source = stream;
    stream.addEventListener("snapshot", (message) => {
      if (stream !== source) return;
      try {
        render(JSON.parse(message.data));
      } catch (error) {
        console.error("bad snapshot", error);
      }
    });
    stream.addEventListener("error", () => {
      if (stream !== source) return;
      if (stream.readyState === EventSource.CLOSED) {
        // A refused stream (401, 5xx): find out why with a plain request, then retry.
        closeStream();
        setConnection("offline", "offline");
        start();
      } else {
        setConnection("reconnecting", "reconnecting…");
        showBanner("error", "Lost the live connection to the view; reconnecting…");
      }
    });
  }

  // A clock for the page only (never a request): flags a stream that went silent.
  setInterval(() => {
    if (source === null || !lastMessageAt) return;
    const silent = Date.now() - lastMessageAt;
    if (silent > STALE_MS && source.readyState === EventSource.OPEN) {
      setConnection("reconnecting", "no updates");
      showBanner("error", `No update from the view for ${Math.round(silent / 1000)} s; the figures may be out of date.`);
    }
  }, 1000);

  // ---------------------------------------------------------------------------------------
  // token dialog

  function askToken(refused) {
    closeStream();
    setConnection("offline", "token required");
    showBanner("warning", "This view requires a bearer token.");
    const dialog = $("#login");
    $("#login-error").hidden = !refused;
    if (!dialog.open) dialog.showModal();
    $("#token-input").focus();
  }

  $("#login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("#token-input").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("#login").close();
    $("#forget-token").hidden = false;
    showBanner(null, "");
    start();
  });

  $("#forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("#forget-token").hidden = true;
    start();
  });

  // ---------------------------------------------------------------------------------------
  // rendering

  function render(data) {
    snapshot = data;
    lastMessageAt = Date.now();
    const c = data.condition;
    if (c.code === "ok") {
      setConnection("live", "live");
      showBanner(null, "");
    } else {
      setConnection(c.code, c.code === "behind" ? "behind" : c.code === "stale" ? "stale" : "projector stopped");
      showBanner(c.level, c.message);
    }
    const lag = data.projection ? data.projection.lag_events : null;
    $("#as-of").textContent = `updated ${fmtTime(data.now_ms)}${lag === null ? "" : ` · lag ${fmtNumber(lag)} events`}`;
    renderStatus(data.status);
    renderPerf(data);
    renderDepth();
    renderSla(data.status.wait_times);
    renderStarved(data.status.starved_clients || []);
    renderSessions(data.sessions);
    renderBatches(data);
    renderDeadLetters(data.dead_letters);
    renderTail(data.events);
    refreshTracked();
  }

  function renderStatus(status) {
    for (const node of $$("[data-stat]")) node.textContent = fmtNumber(status[node.dataset.stat]);
    for (const node of $$("[data-rate]")) node.textContent = fmtRate(status[node.dataset.rate]);
    for (const node of $$("[data-priority]")) node.textContent = fmtNumber(status.tasks_by_priority[node.dataset.priority] || 0);
    for (const node of $$("[data-health]")) node.textContent = fmtNumber(status.session_health[node.dataset.health] || 0);
    const states = Object.entries(status.tasks_by_state).filter(([, n]) => n > 0);
    $("#states").replaceChildren(
      ...(states.length
        ? states.map(([state, n]) => el("span", { class: "state", "data-state": state, "data-state-count": state, text: `${state} ${fmtNumber(n)}` }))
        : [el("span", { class: "muted", text: "none yet" })]),
    );
  }

  function renderPerf(data) {
    const set = (name, text) => {
      for (const node of $$(`[data-metric="${name}"]`)) node.textContent = text;
    };
    set("completed_per_s", data.throughput.completed_per_s.toFixed(2));
    set("failed_per_s", data.throughput.failed_per_s.toFixed(2));
    const rate = data.health.success_rate;
    set("success_rate", rate === null ? "–" : `${(rate * 100).toFixed(1)} %`);
    set("processed", fmtNumber(data.health.processed));
    set("p50_ms", fmtMs(data.latency.p50_ms));
    set("p90_ms", fmtMs(data.latency.p90_ms));
    set("p99_ms", fmtMs(data.latency.p99_ms));
    set("latency_count", fmtNumber(data.latency.count));
    $("#latency-window").textContent = `(${Math.round(data.latency.window_s / 60)} min)`;
  }

  function renderSla(waits) {
    const rows = PRIORITIES.map((name) => {
      const w = waits[name];
      return el(
        "tr",
        { class: w.sla_breaches > 0 ? "breach" : "", "data-priority-row": name },
        el("td", { text: name }),
        el("td", { text: fmtMs(w.sla_ms) }),
        el("td", { class: "num opt", text: fmtNumber(w.assigned) }),
        el("td", { class: "num", title: `average ${fmtMs(w.avg_wait_ms)}`, text: w.assigned ? fmtMs(w.max_wait_ms) : "–" }),
        el("td", { class: "num breaches", "data-breaches": name, text: fmtNumber(w.sla_breaches) }),
      );
    });
    $("#sla-rows").replaceChildren(...rows);
  }

  function renderStarved(starved) {
    const reasons = { no_session: "no session", circuit_open: "every circuit open", no_pool_capacity: "no pool capacity" };
    $("#starved").replaceChildren(
      ...(starved.length
        ? starved.map((s) =>
            el("li", { class: "breach", "data-starved": s.client_id, title: `since ${s.starved_since}` },
              el("strong", { text: s.client_id }),
              el("span", { text: ` ${reasons[s.reason] || s.reason} · ${fmtNumber(s.waiting_tasks)} waiting · ${fmtNumber(s.sla_breaches)} SLA breaches` })))
        : [el("li", { class: "muted", text: "none" })]),
    );
  }

  function renderSessions(sessions) {
    const rows = sessions.map((s) => {
      const capacity = s.max_concurrent || 0;
      const ratio = capacity ? Math.min(1, s.in_flight / capacity) : 0;
      const fill = el("div", { class: ratio >= 1 ? "fill full" : "fill" });
      fill.style.width = `${Math.round(ratio * 100)}%`;
      return el(
        "tr",
        { "data-session": s.session_id },
        el("td", { class: "id", text: s.session_id }),
        el("td", { class: "opt id", text: s.client_id || "–" }),
        el("td", {}, el("span", { class: `badge health-${s.health_status}`, text: `${s.health_status} ${s.health_score.toFixed(2)}` })),
        el("td", {}, el("span", { class: "meter" }, el("span", { class: "bar" }, fill), el("span", { "data-in-flight": s.session_id, text: `${s.in_flight}/${capacity || "?"}` }))),
        el("td", { class: "opt", text: s.circuit }),
        el("td", { class: "num opt", text: fmtNumber(s.tasks_completed) }),
        el("td", { class: "num opt", text: fmtNumber(s.tasks_failed) }),
      );
    });
    $("#session-rows").replaceChildren(...rows);
    $("#sessions-empty").hidden = sessions.length > 0;
  }

  function renderBatches(data) {
    $("[data-batches=open]").textContent = fmtNumber(data.open_batches);
    $("[data-batches=dispatched]").textContent = fmtNumber(data.dispatched_batches);
    const items = data.batches.map((b) => {
      const since = b.dispatched_at_ms || b.opened_at_ms;
      return el(
        "li",
        { "data-batch": b.batch_id },
        el("span", { class: "id", text: b.batch_id }),
        el("span", { class: "state", "data-state": b.state, text: b.state }),
        el("span", { class: "muted", text: `${b.operation || "?"} · ${b.task_ids.length} task(s) · ${b.client_id}` }),
        since ? el("span", { class: "muted", text: `${fmtMs(Math.max(0, data.now_ms - since))} ago` }) : null,
      );
    });
    $("#batch-list").replaceChildren(...items);
    $("#batches-empty").hidden = items.length > 0;
  }

  let deadLettersKey = "";

  function renderDeadLetters(items, force) {
    // Rebuilt only when something changed, so a button is not replaced under the pointer.
    const key = JSON.stringify([items, Array.from(requested), Array.from(selected)]);
    if (!force && key === deadLettersKey) return;
    deadLettersKey = key;
    const present = new Set(items.map((d) => d.task_id));
    for (const id of Array.from(selected)) if (!present.has(id)) selected.delete(id);
    const rows = items.map((d) => {
      const box = el("input", { type: "checkbox", "aria-label": `Select ${d.task_id}` });
      box.checked = selected.has(d.task_id);
      box.addEventListener("change", () => {
        if (box.checked) selected.add(d.task_id);
        else selected.delete(d.task_id);
        updateSelection();
      });
      const asked = requested.has(d.task_id);
      const button = el("button", { type: "button", class: "small", "data-redrive": d.task_id, text: asked && !d.redrive_state ? "Redriving…" : "Redrive" });
      button.disabled = redriven(d) || asked;
      button.addEventListener("click", () => redrive([d.task_id]));
      const state = d.redrive_state || (asked ? "requested" : "not redriven");
      const reason = d.last_error && !d.reason.includes(d.last_error) ? `${d.reason}: ${d.last_error}` : d.reason;
      const attempts = d.attempts.length;
      return el(
        "li",
        { "data-dead-letter": d.task_id },
        box,
        el(
          "div",
          {},
          el(
            "div",
            { class: "head" },
            el("span", { class: "id", text: d.task_id }),
            el("span", { class: "muted small", text: `${d.operation} · ${d.client_id} · ${attempts} attempt${attempts === 1 ? "" : "s"} · ${fmtTime(d.at_ms)}` }),
          ),
          el("div", { class: "reason", text: reason }),
          el(
            "div",
            { class: "redrive" },
            el("span", { class: "muted", text: "redrive" }),
            el("span", { class: "id", text: d.redrive_task_id }),
            el("span", { class: "state", "data-state": state, "data-redrive-state": d.task_id, text: state }),
          ),
        ),
        button,
      );
    });
    $("#dlq-list").replaceChildren(...rows);
    $("#dlq-empty").hidden = items.length > 0;
    const total = snapshot ? snapshot.status.dead_letters : items.length;
    $("#dlq-more").hidden = total <= items.length;
    $("#dlq-more").textContent = `Showing ${items.length} of ${fmtNumber(total)}; GET /dlq lists them all.`;
    updateSelection();
  }

  function redriven(d) {
    return d.redrive_state !== null && d.redrive_state !== undefined;
  }

  function updateSelection() {
    $("#redrive-selected").disabled = selected.size === 0;
    $("#redrive-selected").textContent = selected.size ? `Redrive selected (${selected.size})` : "Redrive selected";
  }

  $("#dlq-all").addEventListener("change", (event) => {
    selected.clear();
    if (event.target.checked && snapshot) {
      for (const d of snapshot.dead_letters) if (!redriven(d) && !requested.has(d.task_id)) selected.add(d.task_id);
    }
    if (snapshot) renderDeadLetters(snapshot.dead_letters, true);
  });

  $("#redrive-selected").addEventListener("click", () => redrive(Array.from(selected)));

  const EVENT_KIND = {
    "task.completed": "ok",
    "batch.result_consolidated": "ok",
    "session.registered": "ok",
    "task.failed": "bad",
    "task.dead_lettered": "bad",
    "task.rejected": "bad",
    "task.attempt_failed": "warn",
    "task.retry_scheduled": "warn",
    "task.timed_out": "warn",
    "session.health_changed": "warn",
  };

  function renderTail(events) {
    const items = events.map((e) => {
      const subject = e.task_id || e.batch_id || e.session_id || "";
      const what = [subject, e.client_id, e.detail].filter(Boolean).join(" · ");
      return el(
        "li",
        { "data-event-task": e.task_id || "" },
        el("time", { text: fmtTime(e.at_ms) }),
        el("span", { class: "type", "data-kind": EVENT_KIND[e.type] || "", text: e.type }),
        el("span", { class: "what id", title: what, text: what }),
      );
    });
    $("#tail").replaceChildren(...items);
  }

  // ---------------------------------------------------------------------------------------
  // queue-depth chart (canvas, stacked steps per priority)

  function cssColor(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(`--p-${name}`).trim() || "#888";
  }

  // The top of the y axis: four equal integer steps of 1, 2, 3 or 5 × 10^k.
  function niceMax(value) {
    const raw = Math.max(1, Math.ceil(value / 4));
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    for (const step of [1, 2, 3, 5, 10]) {
      if (step * magnitude >= raw) return 4 * step * magnitude;
    }
    return 40 * magnitude;
  }

  function renderDepth() {
    const canvas = $("#depth-chart");
    if (!snapshot || !canvas) return;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);

    const now = snapshot.now_ms;
    // Up to 10 minutes; a shorter history is spread over the width (at least one minute).
    const first = snapshot.depth.length ? snapshot.depth[0].at_ms : now;
    const spanMs = Math.min(HISTORY_MS, Math.max(60000, Math.ceil((now - first) / 60000) * 60000));
    const t0 = now - spanMs;
    const spanMin = spanMs / 60000;
    $("#depth-span").textContent = spanMin === 1 ? "last minute" : `last ${spanMin} minutes`;
    const left = 40, right = 8, top = 8, bottom = 20;
    const plotW = width - left - right;
    const plotH = height - top - bottom;
    const samples = snapshot.depth.slice();
    const current = snapshot.status.tasks_by_priority;
    samples.push({ at_ms: now, depth: current });

    const totals = samples.map((s) => PRIORITIES.reduce((sum, p) => sum + (s.depth[p] || 0), 0));
    const yMax = niceMax(Math.max(0, ...totals));
    const x = (t) => left + ((Math.max(t, t0) - t0) / spanMs) * plotW;
    const y = (v) => top + plotH - (v / yMax) * plotH;

    // grid and axes
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#677084";
    ctx.strokeStyle = "#e6e8ee";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const v = (yMax / 4) * i;
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, yy);
      ctx.lineTo(left + plotW, yy);
      ctx.stroke();
      ctx.fillText(v.toLocaleString("en-US"), left - 6, yy);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const ticks = plotW < 320 ? 3 : 6;
    for (let i = ticks - 1; i >= 0; i--) {
      const ago = (spanMs / (ticks - 1)) * i;
      const xx = x(now - ago);
      const label = ago === 0 ? "now" : ago % 60000 === 0 ? `−${ago / 60000}m` : `−${Math.round(ago / 1000)}s`;
      ctx.fillText(label, Math.min(Math.max(xx, left + 14), left + plotW - 14), top + plotH + 5);
    }

    // stacked step areas, bottom = critical
    if (samples.length >= 1) {
      const base = samples.map(() => 0);
      for (const priority of PRIORITIES) {
        const tops = samples.map((s, i) => base[i] + (s.depth[priority] || 0));
        if (tops.some((v, i) => v !== base[i])) {
          ctx.beginPath();
          const start = x(samples[0].at_ms);
          ctx.moveTo(start, y(tops[0]));
          for (let i = 1; i < samples.length; i++) {
            const xx = x(samples[i].at_ms);
            ctx.lineTo(xx, y(tops[i - 1]));
            ctx.lineTo(xx, y(tops[i]));
          }
          for (let i = samples.length - 1; i >= 1; i--) {
            const xx = x(samples[i].at_ms);
            ctx.lineTo(xx, y(base[i]));
            ctx.lineTo(xx, y(base[i - 1]));
          }
          ctx.lineTo(start, y(base[0]));
          ctx.closePath();
          ctx.fillStyle = cssColor(priority);
          ctx.globalAlpha = 0.8;
          ctx.fill();
          ctx.globalAlpha = 1;
        }
        for (let i = 0; i < samples.length; i++) base[i] = tops[i];
      }
    }
    ctx.strokeStyle = "#c9ced8";
    ctx.beginPath();
    ctx.moveTo(left + 0.5, top);
    ctx.lineTo(left + 0.5, top + plotH + 0.5);
    ctx.lineTo(left + plotW, top + plotH + 0.5);
    ctx.stroke();

    const summary = PRIORITIES.map((p) => `${p} ${current[p] || 0}`).join(", ");
    canvas.setAttribute("aria-label", `Queue depth by priority over the ${$("#depth-span").textContent}; now: ${summary}`);
  }

  window.addEventListener("resize", () => renderDepth());

  // ---------------------------------------------------------------------------------------
  // commands: submit and redrive (the command gateway's POST /tasks and POST /dlq/redrive)

  async function loadOperations() {
    if ($("#operations").childElementCount) return;
    try {
      const response = await api("/dashboard/operations");
      if (!response.ok) return;
      const operations = await response.json();
      $("#operations").replaceChildren(
        ...operations.map((o) => el("option", { value: o.name, text: `${o.priority}${o.batchable ? ", batchable" : ""}` })),
      );
    } catch (_) {
      /* the form still takes any operation name */
    }
  }

  function track(taskId, origin, link) {
    tracked.delete(taskId);
    tracked.set(taskId, { state: null, origin, link: link || `/tasks/${encodeURIComponent(taskId)}` });
    while (tracked.size > TRACK_LIMIT) tracked.delete(tracked.keys().next().value);
    renderTracked();
    lastRefresh = 0;
    refreshTracked();
  }

  function renderTracked() {
    const items = Array.from(tracked.entries()).reverse().map(([id, t]) => {
      const state = t.state || "submitted";
      return el(
        "li",
        { "data-tracked": id },
        el("span", { class: "id", text: id }),
        el("span", { class: "state", "data-state": state, "data-tracked-state": id, text: state }),
        el("span", { class: "muted", text: t.origin }),
        ...(t.steps ? [renderSteps(id, t.steps)] : []),
      );
    });
    $("#tracked-list").replaceChildren(...items);
  }

  // A multi-step task's steps (GET /tasks/{id}/steps): id, status, what blocked or failed it.
  function renderSteps(taskId, steps) {
    return el(
      "ul",
      { class: "steps", "data-steps": taskId },
      ...steps.map((step) =>
        el(
          "li",
          { "data-step": step.id },
          el("span", { class: "id", text: step.name || step.id }),
          el("span", { class: "state", "data-state": step.status, text: step.status }),
          el("span", { class: "muted", text: step.error || (step.depends_on.length ? `after ${step.depends_on.join(", ")}` : "") }),
        ),
      ),
    );
  }

  // Runs with each snapshot (once a second at most), only for tasks not yet finished.
  async function refreshTracked() {
    const open = Array.from(tracked.entries()).filter(([, t]) => !TERMINAL.has(t.state));
    // Paced by the snapshots (one a second); the gate only absorbs their jitter.
    if (!open.length || refreshing || Date.now() - lastRefresh < 500) return;
    refreshing = true;
    lastRefresh = Date.now();
    try {
      await Promise.all(
        open.map(async ([id, t]) => {
          const response = await api(t.link);
          if (response.ok) t.state = (await response.json()).state;
          else if (response.status === 404) t.state = null;
          if (t.state && t.hasSteps !== false) {
            const steps = await api(`${t.link}/steps`);
            if (steps.ok) t.steps = (await steps.json()).steps;
            else if (steps.status === 404) t.hasSteps = false;
          }
        }),
      );
    } catch (_) {
      /* next snapshot retries */
    } finally {
      refreshing = false;
      renderTracked();
    }
  }

  $("#submit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const message = $("#submit-message");
    const data = new FormData(form);
    const body = {
      client_id: String(data.get("client_id") || "").trim(),
      operation: String(data.get("operation") || "").trim(),
    };
    if (!body.client_id || !body.operation) {
      say(message, "Client id and operation are required.", "error");
      return;
    }
    try {
      const payload = JSON.parse(String(data.get("payload") || "{}") || "{}");
      if (payload === null || typeof payload !== "object" || Array.isArray(payload)) throw new Error("not an object");
      body.payload = payload;
    } catch (_) {
      say(message, "The payload must be a JSON object, for example {\"contact\": \"ct_1\"}.", "error");
      return;
    }
    const stepsText = String(data.get("steps") || "").trim();
    if (stepsText) {
      try {
        const steps = JSON.parse(stepsText);
        if (!Array.isArray(steps)) throw new Error("not an array");
        body.steps = steps;
      } catch (_) {
        say(message, "The steps must be a JSON array of {id, operation, config, depends_on, failure_policy}.", "error");
        return;
      }
    }
    const priority = String(data.get("priority") || "");
    if (priority) body.priority = Number(priority);
    const taskId = String(data.get("task_id") || "").trim();
    if (taskId) body.task_id = taskId;

    const button = $("#submit-button");
    button.disabled = true;
    say(message, "Submitting…", "");
    try {
      const response = await api("/tasks", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      if (response.status === 404 || response.status === 405) {
        say(message, "Submitting is not available here: POST /tasks answered " + response.status + " (this view runs without the command gateway).", "error");
      } else if (!response.ok) {
        say(message, `Refused (HTTP ${response.status}): ${await detailOf(response)}`, "error");
      } else {
        const answer = await response.json();
        say(message, `Accepted: ${answer.task_id}`, "ok");
        track(answer.task_id, "submitted", answer.link);
        form.elements.task_id.value = "";
      }
    } catch (error) {
      if (!(error instanceof AuthError)) say(message, "The view does not answer; try again.", "error");
    } finally {
      button.disabled = false;
    }
  });

  async function redrive(taskIds) {
    const message = $("#dlq-message");
    if (!taskIds.length) return;
    say(message, `Redriving ${taskIds.length} task(s)…`, "");
    const buttons = taskIds
      .map((id) => document.querySelector(`[data-redrive="${CSS.escape(id)}"]`))
      .filter(Boolean);
    for (const button of buttons) button.disabled = true;
    try {
      const response = await api("/dlq/redrive", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ task_ids: taskIds }),
      });
      if (!response.ok) {
        const detail = await detailOf(response);
        if ((response.status === 404 && detail === "Not Found") || response.status === 405) {
          say(message, "Redrive is not available here: POST /dlq/redrive answered " + response.status + " (this view runs without the command gateway).", "error");
        } else {
          say(message, `Redrive refused (HTTP ${response.status}): ${detail}`, "error");
        }
        for (const button of buttons) button.disabled = false;
        return;
      }
      let answer = {};
      try {
        answer = await response.json();
      } catch (_) {
        /* an empty 202 is fine */
      }
      const done = (answer.redriven || []).concat(answer.already_redriven || []);
      const skipped = (answer.not_redrivable || []).map((i) => `${i.task_id || i.source}: ${i.why}`);
      const missing = answer.not_found || [];
      let text = `Redrive accepted for ${done.length} task(s)`;
      if (skipped.length) text += `; not redrivable: ${skipped.join(", ")}`;
      if (missing.length) text += `; no dead letter for: ${missing.join(", ")}`;
      say(message, `${text}.`, skipped.length || missing.length ? "error" : "ok");
      for (const id of taskIds) selected.delete(id);
      for (const item of done) {
        if (item.task_id) requested.add(item.task_id);
        if (item.new_task_id) track(item.new_task_id, `redrive of ${item.task_id}`, item.link);
      }
      if (snapshot) renderDeadLetters(snapshot.dead_letters, true);
    } catch (error) {
      if (!(error instanceof AuthError)) say(message, "The view does not answer; try again.", "error");
    }
  }

  if (token()) $("#forget-token").hidden = false;
  start();
})();
