// The live queue dashboard: polls the JSON endpoints of queues/dashboard and
// redraws in place. The depth history lives only in this page (five
// minutes of polls), so the server keeps no state for it.
(function () {
  "use strict";

  const root = document.getElementById("dashboard");
  const POLL_MS = Number(root.dataset.pollMs) || 2000;
  const HISTORY_MS = 5 * 60 * 1000;
  // The head of a queue older than this is shown in red (the runbook's
  // OldestExecutionAging alert fires at 30 minutes).
  const AGING_SECONDS = 30 * 60;

  const queuesBody = document.querySelector("#queues tbody");
  const detail = document.getElementById("detail");
  const statusBadge = document.getElementById("status");
  const history = new Map(); // action ref -> [{t, waiting}]
  let selected = null;

  function csrfToken() {
    return document.querySelector('meta[name="csrf-token"]').content;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.floor(seconds);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  }

  function cell(tag, text, className) {
    const el = document.createElement(tag);
    if (text !== undefined && text !== null) el.textContent = text;
    if (className) el.className = className;
    return el;
  }

  function setStatus(ok, text) {
    statusBadge.dataset.state = ok ? "ok" : "error";
    statusBadge.textContent = text;
  }

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error((body.error && body.error.message) || "HTTP " + response.status);
    }
    return body;
  }

  // --- the queue table ---------------------------------------------------------

  function rowFor(ref, label) {
    let row = queuesBody.querySelector('tr[data-action="' + CSS.escape(ref) + '"]');
    if (row) return row;
    const empty = queuesBody.querySelector("tr.empty");
    if (empty) empty.remove();
    row = document.createElement("tr");
    row.dataset.action = ref;
    row.tabIndex = 0;
    row.innerHTML =
      '<td class="name"><span class="ref"></span></td>' +
      '<td class="bar-col"><div class="bar"><div class="fill"></div></div>' +
      '<span data-field="active"></span> / <span data-field="limit"></span></td>' +
      '<td class="num" data-field="waiting"></td>' +
      '<td class="num" data-field="oldest"></td>' +
      '<td class="num" data-field="throughput"></td>' +
      '<td class="spark"><svg viewBox="0 0 150 28" preserveAspectRatio="none" aria-hidden="true">' +
      '<line class="base" x1="0" y1="27" x2="150" y2="27"></line>' +
      '<polygon points=""></polygon><polyline points=""></polyline></svg></td>';
    row.querySelector(".ref").textContent = ref;
    if (label) row.querySelector(".name").append(cell("div", label, "label"));
    queuesBody.appendChild(row);
    return row;
  }

  function drawSpark(row, points, now) {
    const line = row.querySelector("polyline");
    const area = row.querySelector("polygon");
    if (!points.length) {
      line.setAttribute("points", "");
      area.setAttribute("points", "");
      return;
    }
    const top = Math.max(1, ...points.map((p) => p.waiting));
    // Until five minutes of polls are in, the chart spans what there is
    // (at least 20 s), so a page just opened already shows a trend.
    const span = Math.min(HISTORY_MS, Math.max(20000, now - points[0].t));
    const xs = points.map((p) => 150 * (1 - (now - p.t) / span));
    const coords = points.map((p, i) => xs[i].toFixed(1) + "," + (27 - (23 * p.waiting) / top).toFixed(1));
    line.setAttribute("points", coords.join(" "));
    area.setAttribute("points", [xs[0].toFixed(1) + ",27", ...coords, xs[xs.length - 1].toFixed(1) + ",27"].join(" "));
    const svg = row.querySelector("svg");
    svg.dataset.max = String(top);
    svg.dataset.points = String(points.length);
    svg.parentElement.title = "Waiting now: " + points[points.length - 1].waiting + ", peak in view: " + top;
  }

  // An action split into groups (a policy with parameters) lists each
  // group's active and waiting counts under its ref, busiest first.
  function drawGroups(row, groups) {
    const name = row.querySelector(".name");
    let list = name.querySelector("ul.groups");
    if (groups.length <= 1) {
      if (list) list.remove();
      return;
    }
    if (!list) list = name.appendChild(cell("ul", null, "groups"));
    list.replaceChildren(
      ...groups.map((g) => {
        const item = cell("li");
        item.dataset.group = g.group;
        item.append(cell("span", g.group, "ref"), " " + g.active + " active, " + g.waiting + " waiting");
        return item;
      })
    );
  }

  function renderQueues(data) {
    const now = Date.now();
    const seen = new Set();
    for (const q of data.queues) {
      seen.add(q.action);
      const row = rowFor(q.action, q.label);
      const limit = q.limit === null ? null : q.limit;
      row.querySelector('[data-field="active"]').textContent = q.active;
      row.querySelector('[data-field="limit"]').textContent = limit === null ? "∞" : limit;
      row.querySelector('[data-field="waiting"]').textContent = q.waiting;
      row.querySelector('[data-field="oldest"]').textContent = duration(q.oldest_age_seconds);
      row.querySelector('[data-field="throughput"]').textContent = q.throughput_per_minute;
      const share = limit ? Math.min(1, q.active / limit) : q.active ? 1 : 0;
      const fill = row.querySelector(".fill");
      fill.style.width = (share * 100).toFixed(0) + "%";
      fill.classList.toggle("full", limit !== null && q.active >= limit);
      row.classList.toggle("aging", (q.oldest_age_seconds || 0) > AGING_SECONDS);
      drawGroups(row, q.groups || []);
      row.classList.toggle("selected", q.action === selected);

      const points = history.get(q.action) || [];
      points.push({ t: now, waiting: q.waiting });
      while (points.length && now - points[0].t > HISTORY_MS) points.shift();
      history.set(q.action, points);
      drawSpark(row, points, now);
    }
    for (const row of queuesBody.querySelectorAll("tr[data-action]")) {
      if (!seen.has(row.dataset.action)) row.remove();
    }
    const stamp = document.getElementById("generated-at");
    stamp.dateTime = data.generated_at;
    stamp.textContent = new Date(data.generated_at).toLocaleTimeString();
  }

  // --- one queue's executions ----------------------------------------------------

  function cancelButton(execution) {
    const button = cell("button", "Cancel", "cancel");
    button.type = "button";
    button.dataset.execution = execution.id;
    button.addEventListener("click", () => cancel(execution.id, button));
    return button;
  }

  function paramsCell(parameters) {
    const td = cell("td", parameters === null ? "" : JSON.stringify(parameters), "params");
    td.title = td.textContent;
    return td;
  }

  function renderDetail(data) {
    document.getElementById("detail-action").textContent = data.action;
    document.getElementById("detail-summary").textContent =
      data.waiting_total + " waiting · " + data.active.length + " holding a slot";

    const waiting = document.querySelector("#waiting tbody");
    waiting.replaceChildren(
      ...data.waiting.map((execution) => {
        const tr = document.createElement("tr");
        tr.dataset.execution = execution.id;
        tr.append(
          // Under a policy with parameters each group is a queue of its own.
          cell(
            "td",
            execution.group && execution.group !== "default"
              ? execution.group + " #" + execution.position
              : execution.position,
            "num"
          ),
          cell("td", null),
          cell("td", execution.requested_by || "–"),
          cell("td", duration(execution.waited_seconds), "num"),
          paramsCell(execution.parameters),
          cell("td", null)
        );
        tr.children[0].dataset.field = "position";
        tr.children[1].append(cell("code", execution.id));
        tr.children[5].append(cancelButton(execution));
        return tr;
      })
    );
    if (!data.waiting.length) {
      waiting.append(cell("tr", null));
      waiting.lastChild.append(cell("td", "Nobody waits.", "meta"));
      waiting.lastChild.firstChild.colSpan = 6;
    }
    const more = data.waiting_total - data.waiting.length;
    document.getElementById("waiting-more").textContent = more > 0 ? "… and " + more + " more" : "";

    const active = document.querySelector("#active tbody");
    active.replaceChildren(
      ...data.active.map((execution) => {
        const tr = document.createElement("tr");
        tr.dataset.execution = execution.id;
        tr.append(
          cell("td", execution.status),
          cell("td", null),
          cell("td", execution.requested_by || "–"),
          cell("td", execution.worker || "–")
        );
        tr.children[1].append(cell("code", execution.id));
        tr.append(paramsCell(execution.parameters), cell("td", null));
        if (execution.status !== "canceling") tr.lastChild.append(cancelButton(execution));
        return tr;
      })
    );
  }

  function message(text, isError) {
    const el = document.getElementById("detail-message");
    el.textContent = text;
    el.classList.toggle("error", Boolean(isError));
  }

  async function refreshDetail() {
    if (!selected) return;
    const ref = selected;
    const data = await getJSON(root.dataset.detailUrl.replace("ACTION_REF", encodeURIComponent(ref)));
    if (ref === selected) renderDetail(data);
  }

  function select(ref) {
    selected = ref;
    detail.hidden = false;
    message("", false);
    for (const row of queuesBody.querySelectorAll("tr[data-action]")) {
      row.classList.toggle("selected", row.dataset.action === ref);
    }
    refreshDetail().catch((error) => message(error.message, true));
  }

  async function cancel(executionId, button) {
    button.disabled = true;
    try {
      const response = await fetch(root.dataset.cancelUrl.replace("EXECUTION_ID", executionId), {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        throw new Error((body.error && body.error.message) || "HTTP " + response.status);
      }
      message("Execution " + body.id + " is " + body.status + ".", false);
      await Promise.all([refreshDetail(), poll()]);
    } catch (error) {
      message(error.message, true);
      button.disabled = false;
    }
  }

  // --- polling -----------------------------------------------------------------

  async function poll() {
    try {
      renderQueues(await getJSON(root.dataset.queuesUrl));
      await refreshDetail();
      setStatus(true, "live");
    } catch (error) {
      setStatus(false, "error: " + error.message);
    }
  }

  queuesBody.addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-action]");
    if (row) select(row.dataset.action);
  });
  queuesBody.addEventListener("keydown", (event) => {
    const row = event.target.closest("tr[data-action]");
    if (row && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      select(row.dataset.action);
    }
  });

  poll();
  setInterval(poll, POLL_MS);
})();
