// SessionGate console: plain JavaScript, no framework, no build step. Every text from the API is put in
// the page with textContent (a reason or comment written by someone else is never markup).
"use strict";
(() => {
  // The session token: traded once for the launch token of the URL's fragment, then kept in this tab's
  // sessionStorage (scoped to this origin, port included: no other local server ever sees it).
  const KEY = "sessiongate-console-token";
  let token = window.sessionStorage.getItem(KEY) || "";
  const DEMO = document.querySelector('meta[name="sessiongate-demo"]').content;
  const OPEN = new Set(["PENDING", "APPROVED", "ACTIVE"]);
  const REFRESH_MS = 10000;
  const $ = (id) => document.getElementById(id);
  let skew = 0; // the server's clock minus this browser's (the sandbox runs its own clock)
  let current = "mine";
  let instances = [];
  const seen = new Map(); // request id -> the status last shown

  // ---------------------------------------------------------------------------- the local API
  async function api(method, path, body) {
    const init = { method, headers: {}, credentials: "omit", cache: "no-store" };
    if (token) init.headers["X-SessionGate-Token"] = token;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new Error("the console is not answering: is `sessiongate console` still running?");
    }
    const text = await response.text();
    let data;
    try {
      data = JSON.parse(text);
    } catch (e) {
      // Not the proxy's JSON: the console's own refusal (e.g. a console started again has a new token).
      data = { message: text.trim() || `HTTP ${response.status}` };
    }
    if (data.now) skew = Date.parse(data.now) - Date.now();
    if (!response.ok) {
      const error = new Error(data.message || `HTTP ${response.status}`);
      error.code = data.error;
      throw error;
    }
    return data.data;
  }

  // The launch URL's fragment (#launch=...) is taken out of the address bar and the history at once, then
  // traded for the session token (the console answers that trade once).
  async function signIn() {
    const launch = new URLSearchParams(window.location.hash.slice(1)).get("launch");
    if (launch) {
      window.history.replaceState(null, "", window.location.pathname);
      const answer = await api("POST", "/api/session", { launch });
      token = answer.token;
      window.sessionStorage.setItem(KEY, token);
    }
    if (!token) {
      throw new Error("not signed in: open the URL `sessiongate console` printed (it works once, in one tab)");
    }
  }

  // ---------------------------------------------------------------------------- DOM helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "on") for (const [type, fn] of Object.entries(value)) node.addEventListener(type, fn);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function announce(text) {
    const region = $("announce");
    region.textContent = "";
    window.setTimeout(() => { region.textContent = text; }, 50);
  }

  function showError(error) {
    $("error").textContent = error ? `${error.message}${error.code ? ` (${error.code})` : ""}` : "";
  }

  function instanceLabel(r) {
    const name = (r.instance_tags && r.instance_tags.Name) || "";
    return name ? `${name} (${r.instance_id})` : r.instance_id;
  }

  function person(arn) {
    return arn ? String(arn).split("/").slice(-1)[0] : "";
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "";
  }

  function details(pairs) {
    const list = el("dl");
    for (const [term, value] of pairs) if (value) list.append(el("dt", { text: term }), el("dd", { text: value }));
    return list;
  }

  function field(label, input) {
    const id = input.id;
    return el("div", { class: "field" }, el("label", { for: id, text: label }), input);
  }

  // A button that runs ``action``, disables itself meanwhile, and reports the outcome.
  function actionButton(label, action, cls, done) {
    const button = el("button", { type: "button", class: cls });
    button.textContent = label;
    button.addEventListener("click", async () => {
      button.disabled = true;
      showError(null);
      try {
        await action();
        announce(done);
        await refresh();
      } catch (e) {
        showError(e);
        button.disabled = false;
      }
    });
    return button;
  }

  // ---------------------------------------------------------------------------- countdowns
  function formatLeft(ms) {
    if (ms <= 0) return "expired";
    const s = Math.floor(ms / 1000);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const two = (n) => String(n).padStart(2, "0");
    return `${h ? `${h}:` : ""}${two(m)}:${two(sec)} left`;
  }

  function tick() {
    let ended = false;
    for (const node of document.querySelectorAll("[data-expires]")) {
      const left = Date.parse(node.dataset.expires) - (Date.now() + skew);
      node.textContent = formatLeft(left);
      if (left <= 0 && !node.dataset.ended) {
        node.dataset.ended = "1";
        ended = true;
      }
    }
    if (ended) refresh();
  }

  // ---------------------------------------------------------------------------- views
  async function renderMine() {
    const { requests } = await api("GET", "/api/requests");
    const open = requests.filter((r) => OPEN.has(r.status));
    const live = await Promise.all(
      // One read each: the list has neither the grant's expiry nor the approval progress.
      open.map((r) => api("GET", `/api/requests/${r.request_id}`).then((d) => d.request))
    );
    // Changes seen by a refresh are announced (the lists themselves are not live regions: a refresh
    // every few seconds would read them out again and again).
    const changed = live.filter((r) => seen.has(r.request_id) && seen.get(r.request_id) !== r.status);
    for (const r of live) seen.set(r.request_id, r.status);
    if (changed.length) announce(changed.map((r) => `${instanceLabel(r)}: ${r.status}`).join("; "));
    const list = $("mine-list");
    list.replaceChildren();
    if (!live.length) list.append(el("p", { text: "No open requests. Use “Request access” to ask for one." }));
    for (const r of live) list.append(requestCard(r));
    tick();
  }

  function requestCard(r) {
    const heading = `h-${r.request_id}`;
    const card = el("article", { class: "card", "aria-labelledby": heading, "data-request-id": r.request_id });
    card.append(el("h3", { id: heading, text: instanceLabel(r) }));
    card.append(el("p", {}, "Status: ", el("span", { class: `status ${r.status}`, text: r.status }),
      r.break_glass ? " (break-glass)" : ""));
    const expires = (r.grant && r.grant.expires_at) || r.expires_at;
    if (r.status === "ACTIVE" && expires) {
      card.append(el("p", {}, "Access: ", el("span", { class: "countdown", role: "timer", "aria-live": "off",
        "data-expires": expires, text: "" }), ` (until ${when(expires)})`));
    }
    const progress = (r.approval_progress || []).map((l) => `${l.name}: ${l.approved}/${l.required}`).join(", ");
    card.append(details([["Reason", r.reason], ["Ticket", r.ticket], ["Minutes", String(r.duration_minutes)],
      ["Rule", r.rule], ["Approvals", progress], ["Requested", when(r.created_at)], ["Request", r.request_id]]));
    const actions = el("div", { class: "actions" });
    if (r.status === "ACTIVE" || r.status === "APPROVED") {
      actions.append(actionButton("I'm done", () => api("POST", `/api/requests/${r.request_id}/revoke`, { reason: "done" }),
        "danger", "Access ended"));
    }
    if (r.status === "ACTIVE") actions.append(extendForm(r));
    if (r.status === "PENDING") {
      actions.append(actionButton("Cancel request", () => api("POST", `/api/requests/${r.request_id}/cancel`, {}),
        "danger", "Request cancelled"));
    }
    card.append(actions);
    return card;
  }

  function extendForm(r) {
    const minutes = el("input", { id: `extend-minutes-${r.request_id}`, type: "number", min: 1, max: 1440, value: 15 });
    const reason = el("input", { id: `extend-reason-${r.request_id}`, type: "text", required: true });
    const form = el("form", { class: "actions", "aria-label": `Extend ${instanceLabel(r)}` },
      field("Extra minutes", minutes), field("Why more time", reason));
    form.append(actionButton("Extend", () => api("POST", `/api/requests/${r.request_id}/extend`,
      { duration_minutes: Number(minutes.value), reason: reason.value }), "", "Extension requested: it needs an approval"));
    form.addEventListener("submit", (e) => e.preventDefault());
    return form;
  }

  async function renderNew() {
    const data = await api("GET", "/api/instances");
    instances = data.instances;
    const select = $("instance");
    const chosen = select.value;
    select.replaceChildren();
    if (!instances.length) select.append(el("option", { value: "", text: "No instance the policy lets you request" }));
    for (const i of instances) {
      const name = i.name ? `${i.name} (${i.instance_id})` : i.instance_id;
      select.append(el("option", { value: i.instance_id, text: `${name}, rule ${i.rule}, ${i.state}` }));
    }
    if (chosen && instances.some((i) => i.instance_id === chosen)) select.value = chosen;
    describeInstance();
  }

  function describeInstance() {
    const chosen = instances.find((i) => i.instance_id === $("instance").value);
    const glass = $("break-glass");
    if (!chosen) {
      glass.disabled = true;
      return;
    }
    const notes = [`Rule ${chosen.rule}.`];
    if (chosen.max_duration_minutes) notes.push(`At most ${chosen.max_duration_minutes} minutes.`);
    if (chosen.ticket_required) notes.push("A ticket is required.");
    notes.push(chosen.break_glass ? `Break-glass allowed (at most ${chosen.break_glass.max_duration_minutes} minutes).` : "No break-glass.");
    $("instance-help").textContent = notes.join(" ");
    $("minutes").max = String(chosen.max_duration_minutes || 1440);
    glass.disabled = !chosen.break_glass;
    if (glass.disabled) glass.checked = false;
  }

  async function submitRequest(event) {
    event.preventDefault();
    showError(null);
    const body = { instance_id: $("instance").value, reason: $("reason").value.trim() };
    const minutes = Number($("minutes").value);
    if (minutes) body.duration_minutes = minutes;
    if ($("ticket").value.trim()) body.ticket = $("ticket").value.trim();
    if ($("break-glass").checked) body.break_glass = true;
    if (!body.instance_id || !body.reason) {
      showError(new Error("choose an instance and give a reason"));
      return;
    }
    const button = event.target.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const { request } = await api("POST", "/api/requests", body);
      $("reason").value = "";
      $("ticket").value = "";
      announce(`Request ${request.status === "PENDING" ? "sent for approval" : request.status.toLowerCase()}`);
      await show("mine");
    } catch (e) {
      showError(e);
    } finally {
      button.disabled = false;
    }
  }

  async function renderApprovals() {
    const { requests } = await api("GET", "/api/approvals");
    $("approvals-count").textContent = requests.length ? String(requests.length) : "";
    const list = $("approvals-list");
    list.replaceChildren();
    if (!requests.length) list.append(el("p", { text: "Nothing waiting for your approval." }));
    for (const r of requests) {
      const heading = `a-${r.request_id}`;
      const comment = el("textarea", { id: `comment-${r.request_id}`, rows: 2 });
      const card = el("article", { class: "card", "aria-labelledby": heading, "data-request-id": r.request_id },
        el("h3", { id: heading, text: `${person(r.requester_arn)} on ${instanceLabel(r)}` }),
        details([["Requester", r.requester_arn], ["Reason", r.reason], ["Ticket", r.ticket],
          ["Minutes", String(r.duration_minutes)], ["Rule", r.rule], ["Requested", when(r.created_at)],
          ["Approved so far", (r.approvals || []).map((a) => person(a.approver_arn)).join(", ")],
          ["Request", r.request_id]]),
        field("Comment (required to reject)", comment));
      const actions = el("div", { class: "actions" },
        actionButton("Approve", () => api("POST", `/api/requests/${r.request_id}/approve`,
          comment.value.trim() ? { comment: comment.value.trim() } : {}), "primary", "Request approved"),
        actionButton("Reject", () => {
          if (!comment.value.trim()) {
            comment.focus();
            return Promise.reject(new Error("a rejection needs a comment"));
          }
          return api("POST", `/api/requests/${r.request_id}/reject`, { comment: comment.value.trim() });
        }, "danger", "Request rejected"));
      card.append(actions);
      list.append(card);
    }
  }

  async function renderHistory() {
    const { requests } = await api("GET", "/api/requests");
    const list = $("history-list");
    list.replaceChildren();
    if (!requests.length) {
      list.append(el("p", { text: "You have made no requests yet." }));
      return;
    }
    const body = el("tbody");
    for (const r of requests) {
      const last = (r.history || [])[r.history.length - 1] || {};
      body.append(el("tr", { "data-request-id": r.request_id },
        el("td", { text: when(r.created_at) }), el("td", { text: instanceLabel(r) }),
        el("td", {}, el("span", { class: `status ${r.status}`, text: r.status })),
        el("td", { text: String(r.duration_minutes) }), el("td", { text: r.reason }),
        el("td", { text: [person(r.decided_by || last.by), r.comment].filter(Boolean).join(": ") })));
    }
    list.append(el("table", {}, el("caption", { text: "Your requests, newest first" }),
      el("thead", {}, el("tr", {}, ["Requested", "Instance", "Status", "Minutes", "Reason", "Last decision"]
        .map((h) => el("th", { scope: "col", text: h })))), body));
  }

  const VIEWS = { mine: renderMine, new: renderNew, approvals: renderApprovals, history: renderHistory };

  async function refresh() {
    try {
      await VIEWS[current]();
    } catch (e) {
      showError(e);
    }
  }

  // The count on the Approvals button, kept fresh in the background (the Approvals view sets it too).
  async function countApprovals() {
    if (current === "approvals") return;
    try {
      const { requests } = await api("GET", "/api/approvals");
      $("approvals-count").textContent = requests.length ? String(requests.length) : "";
    } catch (e) {
      showError(e);
    }
  }

  async function show(view) {
    current = view;
    for (const button of document.querySelectorAll("nav button")) {
      if (button.dataset.view === view) button.setAttribute("aria-current", "page");
      else button.removeAttribute("aria-current");
    }
    for (const name of Object.keys(VIEWS)) $(`view-${name}`).hidden = name !== view;
    showError(null);
    await refresh();
  }

  // Background refresh, but never under the user's fingers (a form being filled in stays as it is).
  function backgroundRefresh() {
    const active = document.activeElement;
    countApprovals();
    if (current === "new" || (active && active.closest && active.closest("form, article, table"))) return;
    refresh();
  }

  async function start() {
    for (const button of document.querySelectorAll("nav button")) {
      button.addEventListener("click", () => show(button.dataset.view));
    }
    $("request-form").addEventListener("submit", submitRequest);
    $("instance").addEventListener("change", describeInstance);
    if (DEMO) {
      $("demo-badge").textContent = DEMO;
      $("demo-badge").hidden = false;
    }
    try {
      await signIn();
    } catch (e) {
      showError(e);
      return;
    }
    try {
      const me = await api("GET", "/api/whoami");
      $("identity").textContent = me.identity;
    } catch (e) {
      showError(e);
    }
    window.setInterval(tick, 1000);
    window.setInterval(backgroundRefresh, REFRESH_MS);
    await show("mine");
    await countApprovals();
  }

  start();
})();
