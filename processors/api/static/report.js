// patchgate report page: vanilla JS, no external resources. Data comes from the JSON API with the
// bearer token, which is taken once from ?token=... (then removed from the address bar) or from the
// sign-in field, and kept in sessionStorage (this tab only). Every text from the API is inserted with
// textContent: server names come from mail headers and must never be interpreted as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "patchgate-token";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const COLOURS = { stage0: "#2e9d5b", stage1: "#3c7dd9", throttle: "#e3a21a", block: "#d13c3c", accept: "#9aa5b5" };
  const $ = (id) => document.getElementById(id);
  let policy = null;
  let lastPause = null;

  // ------------------------------------------------------------------------------------ token
  function takeTokenFromUrl() {
    const url = new URL(window.location.href);
    const token = url.searchParams.get("token");
    if (token) {
      sessionStorage.setItem(TOKEN_KEY, token);
      url.searchParams.delete("token");
      window.history.replaceState(null, "", url.pathname + url.search + url.hash);
    }
  }
  const token = () => sessionStorage.getItem(TOKEN_KEY);

  async function api(method, path, body) {
    const headers = { "Accept": "application/json" };
    if (token()) headers["Authorization"] = "Bearer " + token();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                                         cache: "no-store", credentials: "omit" });
    let data = null;
    try { data = await response.json(); } catch (e) { data = { error: "unexpected_answer", message: "unexpected answer (" + response.status + ")" }; }
    return { status: response.status, data };
  }

  // error answers are {"error": "<code>", "message": "<text for people>"}
  function errorText(r) {
    return (r.data && (r.data.message || r.data.error)) || ("The API answered " + r.status);
  }

  function showMessage(text, isError) {
    const box = $("message");
    box.textContent = text;
    box.className = "message" + (isError ? " error" : "");
    box.hidden = !text;
  }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  const day = (iso) => (iso ? iso.slice(0, 10) : "");
  const when = (iso) => (iso ? iso.slice(0, 16).replace("T", " ") : "");

  function stageInfo(number) {
    if (!policy || !number) return { cls: "stage-0", colour: COLOURS.stage0, throttle: 0, block: 0 };
    const s = policy.stages.find((x) => x.stage === number) || { throttle_minutes: 0, block_minutes: 0 };
    if (s.block_minutes > 0) return { cls: "stage-block", colour: COLOURS.block, throttle: s.throttle_minutes, block: s.block_minutes };
    if (s.throttle_minutes > 0) return { cls: "stage-throttle", colour: COLOURS.throttle, throttle: s.throttle_minutes, block: 0 };
    return { cls: "stage-1", colour: COLOURS.stage1, throttle: 0, block: 0 };
  }

  function countdown(iso) {
    if (!iso) return "";
    let seconds = Math.floor((Date.parse(iso) - Date.now()) / 1000);
    if (seconds <= 0) return "due now";
    const d = Math.floor(seconds / 86400); seconds -= d * 86400;
    const h = Math.floor(seconds / 3600); seconds -= h * 3600;
    const m = Math.floor(seconds / 60); seconds -= m * 60;
    const pad = (n) => String(n).padStart(2, "0");
    return (d ? d + "d " : "") + pad(h) + ":" + pad(m) + ":" + pad(seconds);
  }

  function tickCountdowns() {
    for (const cell of document.querySelectorAll("[data-until]")) cell.textContent = countdown(cell.dataset.until);
  }

  // ------------------------------------------------------------------------------------ charts
  // bars: [{label, segments: [{value, colour, name}]}]; stacked vertically, one axis.
  function barChart(target, bars, opts) {
    while (target.firstChild) target.removeChild(target.firstChild);
    const box = target.viewBox.baseVal;
    const W = box.width, H = box.height, left = 36, right = 8, top = 14, bottom = opts.legend ? 44 : 28;
    const top0 = Math.max(1, ...bars.map((b) => b.segments.reduce((a, s) => a + s.value, 0)));
    const step = Math.max(1, Math.ceil(top0 / 4));  // whole-number ticks
    const ticks = Math.ceil(top0 / step), max = step * ticks;
    const plotH = H - top - bottom, plotW = W - left - right;
    const slot = plotW / Math.max(1, bars.length), barW = Math.max(2, Math.min(48, slot * 0.7));
    for (let i = 0; i <= ticks; i++) {
      const v = step * i, y = top + plotH - (plotH * v) / max;
      target.appendChild(svg("line", { x1: left, x2: W - right, y1: y, y2: y, stroke: "#e3e6eb" }));
      target.appendChild(svg("text", { x: left - 4, y: y + 4, "text-anchor": "end" }, v));
    }
    bars.forEach((bar, i) => {
      const x = left + slot * i + (slot - barW) / 2;
      let y = top + plotH, total = 0;
      for (const seg of bar.segments) {
        if (seg.value <= 0) continue;
        const h = (plotH * seg.value) / max;
        y -= h; total += seg.value;
        const rect = svg("rect", { x, y, width: barW, height: Math.max(1, h), fill: seg.colour, "class": "bar",
                                   "data-label": bar.label, "data-series": seg.name, "data-value": seg.value });
        rect.appendChild(svg("title", {}, bar.label + ": " + seg.value + " " + seg.name));
        target.appendChild(rect);
      }
      if (opts.valueLabels && total > 0) {
        target.appendChild(svg("text", { x: x + barW / 2, y: y - 3, "text-anchor": "middle", "class": "value-label" }, total));
      }
      if (!opts.labelEvery || i % opts.labelEvery === 0 || i === bars.length - 1) {
        target.appendChild(svg("text", { x: x + barW / 2, y: top + plotH + 14, "text-anchor": "middle" }, bar.short || bar.label));
      }
    });
    if (opts.legend) {
      let x = left;
      for (const item of opts.legend) {
        target.appendChild(svg("rect", { x, y: H - 14, width: 10, height: 10, fill: item.colour }));
        target.appendChild(svg("text", { x: x + 14, y: H - 5 }, item.name));
        x += 24 + item.name.length * 6.2;
      }
    }
  }

  function stageBars(counts) {
    const numbers = [0].concat(policy ? policy.stages.map((s) => s.stage) : []);
    for (const key of Object.keys(counts)) if (!numbers.includes(Number(key))) numbers.push(Number(key));
    return numbers.map((n) => ({
      label: n === 0 ? "stage 0 (not enforced)" : "stage " + n, short: String(n),
      segments: [{ value: counts[String(n)] || 0, colour: stageInfo(n).colour, name: "servers" }],
    }));
  }

  // ------------------------------------------------------------------------------------ tenant view
  async function loadTenant(tenant) {
    const [servers, notes] = await Promise.all([
      api("GET", "/v1/tenants/" + encodeURIComponent(tenant) + "/servers"),
      api("GET", "/v1/tenants/" + encodeURIComponent(tenant) + "/notifications?limit=20"),
    ]);
    if (servers.status !== 200) return failed(servers);
    showMessage("");
    const data = servers.data;
    policy = data.policy;
    $("tenant-view").hidden = false;
    renderCards(data);
    renderPause(data.pause);
    const shadow = $("shadow-banner");
    shadow.hidden = !data.shadow;
    shadow.textContent = data.shadow ? "Shadow mode: this tenant's enforcement runs as a dry run. Stages, " +
      "verdicts and notifications are real, but the edges accept its mail and only count the replies " +
      "they would have given." : "";
    barChart($("stage-chart"), stageBars(data.stages), { valueLabels: true });
    barChart($("daily-chart"), data.daily.map((d) => ({
      label: d.date, short: d.date.slice(5),
      segments: [
        { value: d.blocked_estimate, colour: COLOURS.block, name: "blocked (est.)" },
        { value: d.throttled_estimate, colour: COLOURS.throttle, name: "throttled (est.)" },
        { value: Math.max(0, d.messages - d.throttled_estimate - d.blocked_estimate), colour: COLOURS.accept, name: "accepted" },
      ],
    })), { labelEvery: 5, legend: [
      { name: "accepted", colour: COLOURS.accept }, { name: "throttled (est.)", colour: COLOURS.throttle },
      { name: "blocked (est.)", colour: COLOURS.block }] });
    $("estimate-note").textContent = data.estimate_note;
    renderServers(data.servers);
    if (notes.status === 200) renderNotifications(notes.data.notifications);
    tickCountdowns();
  }

  function renderCards(data) {
    $("count-servers").textContent = data.servers.length;
    $("count-enforced").textContent = data.servers.filter((s) => s.throttle_minutes + s.block_minutes > 0 && s.stage > 0).length;
  }

  function renderPause(pause) {
    lastPause = pause;
    $("pause-left").textContent = pause.days_left_this_year + " / " + pause.days_per_year;
    $("pause-state").textContent = pause.active ? "Paused until " + when(pause.paused_until) + " UTC" : "Active (not paused)";
    $("pause-text").textContent = (pause.active
      ? "Throttling and blocking are paused until " + when(pause.paused_until) + " UTC. Reporting continues and the stage clock keeps running. "
      : "Throttling and blocking apply. ") +
      pause.days_left_this_year + " of " + pause.days_per_year + " pause days are left in " + pause.year + ".";
    const input = $("pause-days");
    input.max = String(Math.max(1, Math.min(pause.max_days_per_request, pause.days_left_this_year)));
    $("pause-submit").textContent = pause.active ? "Extend pause" : "Pause";
    $("pause-submit").disabled = pause.days_left_this_year < 1;
    $("pause-end").disabled = !pause.active;
  }

  function renderServers(servers) {
    const body = $("servers").tBodies[0];
    body.replaceChildren();
    for (const s of servers) {
      const tr = document.createElement("tr");
      tr.dataset.serverKey = s.server_key;
      const info = stageInfo(s.stage);
      tr.appendChild(el("td", s.ServerFQDN, "server"));
      tr.appendChild(el("td", s.ExchangeServer || ""));
      tr.appendChild(el("td", s.Build || s.version || ""));
      const statusCell = el("td", s.status + (s.rule ? " (" + s.rule + ")" : ""));
      statusCell.title = s.reason || "";
      tr.appendChild(statusCell);
      const stageCell = el("td");
      stageCell.appendChild(el("span", s.stage, "stage " + info.cls));
      tr.appendChild(stageCell);
      const reply = s.reply_now;
      const replyCell = el("td", null, "reply act-" + reply.action);
      replyCell.textContent = reply.reason === "paused" ? "250 (paused)"
        : reply.withheld ? "250 (shadow: would be " + reply.withheld.slice(0, 3) + ")" : reply.reply;
      if (reply.withheld) replyCell.classList.add("shadow");
      replyCell.title = reply.reason + (reply.changes_at ? ", changes at " + when(reply.changes_at) + " UTC" : "")
        + (reply.withheld ? "; withheld: " + reply.withheld : "");
      tr.appendChild(replyCell);
      tr.appendChild(el("td", day(s.FirstDetectedDate)));
      tr.appendChild(el("td", day(s.ThrottleEnabledDate)));
      tr.appendChild(el("td", day(s.BlockingEnabledDate)));
      const next = el("td", null, "next");
      if (s.NextStage) {
        next.appendChild(el("div", s.NextStage + " on " + day(s.NextStageStartDate)));
        next.appendChild(el("div", "throttle " + s.NextStageThrottleRate + ", block " + s.NextStageBlockRate + " min/h", "sub"));
      }
      tr.appendChild(next);
      const cd = el("td", "", "countdown");
      if (s.NextStageStartDate) cd.dataset.until = s.NextStageStartDate;
      tr.appendChild(cd);
      tr.appendChild(el("td", s.RecommendedBuildVersions.map((r) => r.short + " (" + r.long + ")").join(", "), "wrap"));
      tr.appendChild(el("td", s.client_ips.join(", "), "wrap"));
      tr.appendChild(el("td", when(s.last_seen)));
      const perDay = s.messages_per_day;
      tr.appendChild(el("td", perDay.length ? perDay[perDay.length - 1].messages : 0));
      body.appendChild(tr);
    }
    if (!servers.length) {
      const tr = document.createElement("tr");
      const td = el("td", "No servers reported for this tenant yet.");
      td.colSpan = 15;
      tr.appendChild(td);
      body.appendChild(tr);
    }
  }

  function renderNotifications(items) {
    const list = $("notifications");
    list.replaceChildren();
    for (const n of items) {
      const li = document.createElement("li");
      li.appendChild(el("time", when(n.at)));
      li.appendChild(el("span", n.text));
      list.appendChild(li);
    }
    if (!items.length) list.appendChild(el("li", "No notifications yet."));
  }

  function setResult(text, ok) {
    const box = $("pause-result");
    box.textContent = text;
    box.className = "result " + (ok ? "ok" : "error");
  }

  // After a pause command was accepted, the worker applies it: poll until the pause state changes.
  async function waitForPauseChange(tenant, before, commandId) {
    for (let i = 0; i < 60; i++) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const r = await api("GET", "/v1/tenants/" + encodeURIComponent(tenant) + "/pauses");
      if (r.status === 200 && (r.data.paused_until !== before.paused_until || r.data.active !== before.active)) {
        setResult("Command " + commandId + " applied. " + (r.data.active
          ? "Paused until " + when(r.data.paused_until) + " UTC." : "The pause has ended."), true);
        await loadTenant(tenant);
        return;
      }
    }
    setResult("Command " + commandId + " was queued but not applied within a minute; reload later.", false);
  }

  function bindPauseForm(tenant) {
    $("pause-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const days = Number($("pause-days").value);
      $("pause-submit").disabled = true;
      const before = lastPause;
      const r = await api("POST", "/v1/tenants/" + encodeURIComponent(tenant) + "/pauses", { days });
      $("pause-submit").disabled = false;
      if (r.status === 202) {
        setResult("Pause command " + r.data.command_id + " accepted; waiting for the workers to apply it...", true);
        await waitForPauseChange(tenant, before, r.data.command_id);
      } else {
        setResult(errorText(r), false);
      }
    });
    $("pause-end").addEventListener("click", async () => {
      const before = lastPause;
      const r = await api("DELETE", "/v1/tenants/" + encodeURIComponent(tenant) + "/pauses");
      if (r.status === 202) {
        setResult("End-of-pause command " + r.data.command_id + " accepted; waiting for the workers...", true);
        await waitForPauseChange(tenant, before, r.data.command_id);
      } else {
        setResult(errorText(r), false);
      }
    });
  }

  // ------------------------------------------------------------------------------------ operator view
  async function loadOverview() {
    const r = await api("GET", "/v1/tenants");
    if (r.status !== 200) return failed(r);
    showMessage("");
    policy = r.data.policy;
    $("overview-view").hidden = false;
    const totals = {};
    const body = $("tenants").tBodies[0];
    body.replaceChildren();
    for (const t of r.data.tenants) {
      for (const [stage, n] of Object.entries(t.stages)) totals[stage] = (totals[stage] || 0) + n;
      const tr = document.createElement("tr");
      const name = el("td");
      const link = el("a", t.tenant_id);
      link.href = "/tenants/" + encodeURIComponent(t.tenant_id);
      name.appendChild(link);
      if (t.shadow) name.appendChild(el("span", "shadow mode", "badge shadow"));
      tr.appendChild(name);
      tr.appendChild(el("td", t.servers));
      tr.appendChild(el("td", Object.entries(t.stages).map(([s, n]) => "stage " + s + ": " + n).join(", ")));
      tr.appendChild(el("td", t.pause.active ? "until " + when(t.pause.paused_until) : "-"));
      tr.appendChild(el("td", t.pause.days_left_this_year + " / " + t.pause.days_per_year));
      body.appendChild(tr);
    }
    barChart($("overview-chart"), stageBars(totals), { valueLabels: true });
  }

  function failed(r) {
    if (r.status === 401) {
      showMessage("Sign in with an API token to see this report.", true);
    } else if (r.status === 403 || r.status === 404) {
      showMessage(r.status === 403 ? "This page needs an operator token." : "No such tenant for this token.", true);
    } else {
      showMessage(errorText(r), true);
    }
  }

  // ------------------------------------------------------------------------------------ start
  function start() {
    takeTokenFromUrl();
    $("logout").hidden = !token();
    $("login").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token").value.trim();
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      window.location.reload();
    });
    $("logout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); window.location.reload(); });
    const match = window.location.pathname.match(/^\/tenants\/([^/]+)$/);
    if (match) {
      const tenant = decodeURIComponent(match[1]);
      $("title").textContent = "report for " + tenant;
      document.title = "patchgate - " + tenant;
      bindPauseForm(tenant);
      loadTenant(tenant).catch((e) => showMessage("Cannot load the report: " + e, true));
      setInterval(tickCountdowns, 1000);
    } else {
      $("title").textContent = "all tenants";
      loadOverview().catch((e) => showMessage("Cannot load the overview: " + e, true));
    }
  }

  document.addEventListener("DOMContentLoaded", start);
})();
