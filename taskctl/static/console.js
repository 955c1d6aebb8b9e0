// The taskproc console: a thin page over the API, forwarded and signed by `taskctl console`.
// Every text from the API goes in through textContent, never as markup.
"use strict";

const REFRESH_MS = 5000;
const LISTS = ["FAILED", "RETRYING", "CANCELLED"];
// Every status, in a task's order through them; the overview counts each.
const STATUSES = ["PENDING", "PROCESSING", "RETRYING", "COMPLETED", "FAILED", "CANCELLED"];
const FINAL = ["COMPLETED", "FAILED", "CANCELLED"];
const PAGE_SIZE = 20;
const BULK_LIMIT = 1000;
const state = { status: "FAILED", cursors: [null], page: 0, nextCursor: null, taskId: null, timer: null, round: 0,
  focusTask: false, types: [], throughput: null };

// The schedules' pages: the cursor each page starts at, and the next page's.
const schedules = { cursors: [null], page: 0, nextCursor: null };

const $ = (id) => document.getElementById(id);

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

// --- Talking to the API -----------------------------------------------------------------------

class ConsoleDown extends Error {}

// The console answers API calls only with the token it served inside this page.
const TOKEN = document.querySelector('meta[name="taskctl-token"]').content;

async function api(method, route, body) {
  const headers = { "X-Taskctl-Token": TOKEN, Accept: "application/json" };
  if (method === "POST") headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch("/api" + route, {
      method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ConsoleDown("Cannot reach the console server (taskctl console): is it still running?");
  }
  setProblem("console", null);
  const text = await response.text();
  let parsed = null;
  try { parsed = text ? JSON.parse(text) : null; } catch (error) { parsed = null; }
  return { status: response.status, ok: response.ok, body: parsed };
}

function apiMessage(body) {
  const error = body && body.error;
  if (!error) return body && typeof body.message === "string" ? body.message : "no explanation was given";
  const fields = (error.details || []).filter((d) => d && d.field).map((d) => `${d.field}: ${d.message}`);
  return (error.message || error.code || "error") + (fields.length ? ` (${fields.join("; ")})` : "");
}

// A failed answer in words; `what` says what was being done.
function describe(what, answer, taskId) {
  const code = answer.body && answer.body.error ? answer.body.error.code : "";
  const said = apiMessage(answer.body);
  if (answer.status === 502 && code === "api_unreachable") return `Cannot reach the API while ${what}: ${said}.`;
  if (answer.status === 401 && code === "no_credentials") return `No AWS credentials while ${what}: ${said}.`;
  if (answer.status === 403 && code === "not_the_console") {
    return "The console server was restarted since this page was loaded: reload the page.";
  }
  if (answer.status === 401 || answer.status === 403) {
    return `The API refused access while ${what} (${answer.status}): the console's AWS credentials are missing, ` +
      `expired or not allowed to call this route (the stage's operator policy grants it). The API said: ${said}.`;
  }
  if (answer.status === 404 && taskId !== undefined) {
    return `Task "${taskId}" was not found (404): it never existed, or it finished long ago and was removed.`;
  }
  if (answer.status === 409) return `Refused (409) while ${what}: ${said}.`;
  if (answer.status >= 500) return `The API failed while ${what} (${answer.status}): ${said}.`;
  return `The API answered ${answer.status} while ${what}: ${said}.`;
}

// An API older than the route: a 404, or API Gateway's (and `chalice local`'s) 403 for a route it does not
// have. The console signs the operator routes, so that 403 is not a missing signature.
function routeMissing(answer) {
  return answer.status === 404
    || (answer.status === 403 && Boolean(answer.body) && answer.body.message === "Missing Authentication Token");
}

// --- Notices: `problem` for what keeps failing, `message` for the answers to buttons ------------

const problems = new Map();

function setProblem(source, text) {
  if (text) problems.set(source, text); else problems.delete(source);
  const node = $("problem");
  node.textContent = [...problems.values()].join(" ");
  node.hidden = problems.size === 0;
}

// `text` is a string, or a list of strings and nodes (a link to a task) said in order.
function say(text, tone) {
  const node = $("message");
  node.replaceChildren(...(Array.isArray(text) ? text : [text]));
  node.className = tone || "";
}

// Runs `work`; an unreachable console server is said until a call gets through again, a bug until a refresh works.
async function guarded(work) {
  try {
    await work();
  } catch (error) {
    if (error instanceof ConsoleDown) setProblem("console", error.message);
    else setProblem("page", `Something went wrong in the page: ${error}`);
  }
}

// --- Formatting ---------------------------------------------------------------------------------

// A time as UTC, "2026-11-25 12:00:00" (the schedules' own lines and hover titles name the zone after it).
function utcText(iso) {
  if (!iso) return "-";
  return String(iso).replace("T", " ").slice(0, 19);
}

const LOCAL_TIME = new Intl.DateTimeFormat("en-CA", {
  year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
  hourCycle: "h23", timeZoneName: "short",
});

// A time on the browser's clock with its zone, "2026-11-25 17:30:00 GMT+5:30"; what is not a time, as sent.
function when(iso) {
  if (!iso) return "-";
  const moment = new Date(iso);
  if (Number.isNaN(moment.getTime())) return String(iso);
  const part = Object.fromEntries(LOCAL_TIME.formatToParts(moment).map((p) => [p.type, p.value]));
  return `${part.year}-${part.month}-${part.day} ${part.hour}:${part.minute}:${part.second} ${part.timeZoneName}`;
}

// A time shown on the browser's clock, with UTC on hover.
function timeNode(iso) {
  const node = element("time", when(iso));
  if (iso) {
    node.dateTime = iso;
    node.title = `${utcText(iso)} UTC`;
  }
  return node;
}

function seconds(fromIso, toIso) {
  const from = Date.parse(fromIso), to = Date.parse(toIso);
  if (Number.isNaN(from) || Number.isNaN(to)) return null;
  return ((to - from) / 1000).toFixed(2);
}

function badge(status) {
  return element("span", status || "-", `badge status-${String(status || "").toLowerCase()}`);
}

// An id or digest that may break only after its separators, or every 16 characters of a run without one
// (a hex digest), never between any two letters; its text stays exactly the id.
function idNode(id, tag = "span") {
  const node = element(tag, null, "id");
  const pieces = String(id).split(/(?<=[-_.:/@|#=+,;~])/).flatMap((piece) => piece.match(/.{1,16}/gsu) || [piece]);
  pieces.forEach((piece, n) => {
    if (n > 0) node.append(document.createElement("wbr"));
    node.append(piece);
  });
  return node;
}

function setText(node, text) {
  const shown = text === undefined || text === null ? "" : String(text);
  if (node.textContent !== shown) node.textContent = shown;
}

// Keeps `parent`'s children one per item, in order, by key: a child whose key stays is kept and updated,
// so a refresh changes figures in place rather than drawing the page again.
function sync(parent, items, keyOf, create, update) {
  const existing = new Map([...parent.children].map((child) => [child.dataset.key, child]));
  const wanted = items.map((item) => {
    const key = String(keyOf(item));
    let node = existing.get(key);
    if (!node) {
      node = create(item);
      node.dataset.key = key;
    }
    update(node, item);
    return node;
  });
  wanted.forEach((node, n) => { if (parent.children[n] !== node) parent.insertBefore(node, parent.children[n] || null); });
  while (parent.children.length > wanted.length) parent.lastElementChild.remove();
}

// Redraws a row's cells only when what it shows changed, so a button keeps its focus across refreshes.
function fill(row, shown, cells) {
  const signature = JSON.stringify(shown);
  if (row.dataset.shown === signature) return;
  row.dataset.shown = signature;
  row.replaceChildren(...cells());
}

// --- Overview -----------------------------------------------------------------------------------

function sourceTitle(source) {
  if (!source) return "";
  return `${source.source}${source.exact === false ? " (approximate)" : ""}`;
}

function renderCounts(counts, sources) {
  sync($("counts"), STATUSES, (status) => status, (status) => {
    const group = element("div", null, `count status-${status.toLowerCase()}`);
    group.dataset.status = status;
    const term = element("dt");
    if (LISTS.includes(status)) {
      const link = element("a", status);
      link.href = `#/list/${status}`;
      term.append(link);
    } else {
      term.append(status);
    }
    term.append(element("span", null, "approximate"));
    group.append(term, element("dd"));
    return group;
  }, (group, status) => {
    const value = counts[status];
    const source = sources[`counts.${status}`];
    const figure = group.querySelector("dd");
    setText(figure, value === null || value === undefined ? "-" : value);
    let title = sourceTitle(source);
    if (!(status in counts)) title = "not counted by this API";
    else if (value === null) title = `not known now${source ? `: ${source.source}` : ""}`;
    figure.title = title;
    setText(group.querySelector(".approximate"), source && source.exact === false ? "approximate" : "");
  });
}

async function refreshStats() {
  const answer = await api("GET", "/stats");
  if (!answer.ok) { setProblem("stats", describe("reading the counts", answer)); return; }
  setProblem("stats", null);
  const { counts = {}, queues = {}, repairs = {}, sources = {} } = answer.body || {};
  renderCounts(counts, sources);
  state.throughput = (answer.body || {}).throughput || null;
  renderThroughput(state.throughput);
  renderTypes();
  const names = {
    tasks: "Task queue",
    highPriority: "High priority queue",
    lowPriority: "Low priority queue",
    deadLetters: "Dead-letter queue",
  };
  sync($("queues").tBodies[0], Object.entries(queues), ([name]) => name, ([name]) => {
    const row = element("tr");
    row.dataset.queue = name;
    const head = element("th", names[name] || name);
    head.scope = "row";
    row.append(head, element("td"), element("td"), element("td"), element("td"));
    return row;
  }, (row, [, depth]) => {
    const age = depth.oldestAgeSeconds;
    const cells = row.querySelectorAll("td");
    [depth.visible, depth.inFlight, depth.delayed, age === null || age === undefined ? "-" : `${age} s`]
      .forEach((value, n) => setText(cells[n], value));
  });
  const repairNames = {
    adopted: "Stored by a consumer after its publish died",
    redispatched: "Re-sent by a repeat publish",
    retriesAwaited: "Retry message waited for its write",
  };
  sync($("repairs").tBodies[0], Object.entries(repairs), ([name]) => name, ([name]) => {
    const row = element("tr");
    row.dataset.repair = name;
    const head = element("th", repairNames[name] || name);
    head.scope = "row";
    row.append(head, element("td"));
    return row;
  }, (row, [name, value]) => {
    const cell = row.querySelector("td");
    setText(cell, value === null || value === undefined ? "-" : value);
    cell.title = sourceTitle(sources[`repairs.${name}`]);
  });
  renderScheduleCounts(answer.body.schedules || {}, sources);
  const refreshed = $("refreshed");
  const now = new Date().toISOString();
  setText(refreshed, when(now));
  refreshed.dateTime = now;
  refreshed.title = `${utcText(now)} UTC`;
}

// --- The throughput graph: inline SVG, drawn by hand (the page loads nothing from elsewhere) ----

// The SVG namespace, taken from the page's own <svg> (so the script names no address at all).
const SVG = document.getElementById("throughput-graph").namespaceURI;
const GRAPH = { width: 960, height: 220, left: 48, right: 8, top: 10, bottom: 24 };
const PALETTE = ["#0969da", "#8250df", "#bc4c00", "#1b7c83", "#bf3989", "#6e7781", "#4d2d00", "#116329"];
const typeColours = new Map();
// Kept across refreshes: each bar segment and label by its key, updated in place.
const drawn = { rects: new Map(), labels: new Map() };

function colourOf(type) {
  if (!typeColours.has(type)) typeColours.set(type, PALETTE[typeColours.size % PALETTE.length]);
  return typeColours.get(type);
}

function svgNode(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

function setAttributes(node, attributes) {
  for (const [name, value] of Object.entries(attributes)) {
    if (node.getAttribute(name) !== String(value)) node.setAttribute(name, String(value));
  }
}

function numberAt(values, n) {
  const value = Array.isArray(values) ? values[n] : 0;
  return typeof value === "number" && Number.isFinite(value) && value > 0 ? value : 0;
}

function total(values) {
  return Array.isArray(values) ? values.reduce((sum, _, n) => sum + numberAt(values, n), 0) : 0;
}

function clock(ms) {
  return new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" })
    .format(new Date(ms));
}

function label(key, attributes, text) {
  let node = drawn.labels.get(key);
  if (!node) {
    node = svgNode("text", {});
    node.dataset.key = key;
    $("throughput-graph").querySelector(".labels").append(node);
    drawn.labels.set(key, node);
  }
  setAttributes(node, attributes);
  setText(node, text);
}

function renderThroughput(throughput) {
  const perMinute = throughput && throughput.perMinute;
  const series = perMinute && perMinute.series;
  const graph = $("throughput-graph");
  const shown = Boolean(series && typeof series === "object");
  $("throughput-none").hidden = shown;
  graph.classList.toggle("absent", !shown);
  $("throughput-legend").hidden = !shown;
  if (!shown) return;
  const types = Object.keys(series).filter((name) => name !== "total" && series[name] && typeof series[name] === "object")
    .sort();
  const buckets = Math.max(1, ...types.flatMap((t) => ["completed", "failed"].map((k) => (series[t][k] || []).length)));
  const up = [], down = [];
  for (let n = 0; n < buckets; n += 1) {
    up.push(types.reduce((sum, t) => sum + numberAt(series[t].completed, n), 0));
    down.push(types.reduce((sum, t) => sum + numberAt(series[t].failed, n), 0));
  }
  const maxUp = Math.max(...up), maxDown = Math.max(...down);
  const { width, height, left, right, top, bottom } = GRAPH;
  const plot = height - top - bottom;
  // One scale above and below, so a failed bar and a completed one of the same height are the same count.
  const span = maxUp + maxDown;
  const scale = span > 0 ? (maxUp && maxDown ? plot / span : (plot * 0.85) / span) : 0;
  const baseline = top + (span > 0 ? (maxUp ? maxUp * scale : plot * 0.15) : plot * 0.85);
  const slot = (width - left - right) / buckets;
  const start = Date.parse(perMinute.start);
  const step = (perMinute.stepSeconds || 60) * 1000;

  const seen = new Set();
  const stacked = { completed: new Array(buckets).fill(0), failed: new Array(buckets).fill(0) };
  for (const type of types) {
    for (const kind of ["completed", "failed"]) {
      for (let n = 0; n < buckets; n += 1) {
        const value = numberAt(series[type][kind], n);
        if (!value) continue;
        const key = `${kind}|${type}|${n}`;
        seen.add(key);
        let rect = drawn.rects.get(key);
        if (!rect) {
          rect = svgNode("rect", {});
          rect.append(svgNode("title", {}));
          rect.dataset.key = key;
          graph.querySelector(".bars").append(rect);
          drawn.rects.set(key, rect);
        }
        const below = stacked[kind][n] * scale;
        const tall = Math.max(value * scale, 1);
        stacked[kind][n] += value;
        setAttributes(rect, {
          x: (left + n * slot + 0.5).toFixed(1), width: Math.max(slot - 1, 1).toFixed(1), height: tall.toFixed(1),
          y: (kind === "completed" ? baseline - below - tall : baseline + below).toFixed(1),
          fill: colourOf(type), class: kind, "data-type": type, "data-value": value,
        });
        const at = Number.isNaN(start) ? "" : `${clock(start + n * step)} `;
        setText(rect.firstChild, `${at}${type}: ${value} ${kind}`);
      }
    }
  }
  for (const [key, rect] of drawn.rects) {
    if (!seen.has(key)) { rect.remove(); drawn.rects.delete(key); }
  }
  const grid = graph.querySelector(".grid");
  if (!grid.firstChild) {
    grid.append(svgNode("rect", { class: "failed-band" }), svgNode("line", { class: "baseline" }));
  }
  setAttributes(grid.querySelector(".failed-band"), {
    x: left, y: baseline.toFixed(1), width: width - left - right, height: Math.max(top + plot - baseline, 0).toFixed(1),
  });
  setAttributes(grid.querySelector(".baseline"), { x1: left, x2: width - right, y1: baseline.toFixed(1),
    y2: baseline.toFixed(1) });
  label("up", { x: left - 6, y: top + 10, "text-anchor": "end" }, maxUp ? maxUp : "");
  label("zero", { x: left - 6, y: baseline + 4, "text-anchor": "end" }, "0");
  label("down", { x: left - 6, y: top + plot, "text-anchor": "end" }, maxDown ? maxDown : "");
  for (const n of [0, 15, 30, 45, buckets - 1]) {
    const at = Number.isNaN(start) ? "" : clock(start + n * step);
    label(`x${n === buckets - 1 ? "last" : n}`, { x: (left + (n + 0.5) * slot).toFixed(1), y: height - 6,
      "text-anchor": n === buckets - 1 ? "end" : "middle" }, at);
  }
  const completed = up.reduce((a, b) => a + b, 0), failed = down.reduce((a, b) => a + b, 0);
  setText($("throughput-summary"), `Last hour: ${completed} completed, ${failed} failed` +
    (types.length ? ` (${types.join(", ")})` : ""));
  setText($("throughput-zone"), Intl.DateTimeFormat().resolvedOptions().timeZone || "your zone");
  // The legend names the types the graph draws: those that completed or failed something this hour.
  const drawnTypes = types.filter((type) => total(series[type].completed) + total(series[type].failed) > 0);
  sync($("throughput-legend"), drawnTypes, (type) => type, (type) => {
    const item = element("li");
    item.dataset.type = type;
    const swatch = element("span", null, "swatch");
    item.append(swatch, idNode(type));
    return item;
  }, (item, type) => { item.querySelector(".swatch").style.backgroundColor = colourOf(type); });
}

// --- Lists --------------------------------------------------------------------------------------

// What the API accepts (chalicelib/operate/operations.py): a retry of a FAILED or CANCELLED task, unless it was
// recorded from a poison message; a cancel of a PENDING or RETRYING task, or of a PROCESSING one until a
// cancel is requested. The page offers no button the API would answer with a 409.
const RETRYABLE = ["FAILED", "CANCELLED"];
const CANCELLABLE = ["PENDING", "RETRYING", "PROCESSING"];
const POISON_PREFIX = "poison message:";

function allowed(task) {
  return {
    retry: RETRYABLE.includes(task.status) && !String(task.lastError || "").startsWith(POISON_PREFIX),
    cancel: CANCELLABLE.includes(task.status) && !(task.status === "PROCESSING" && task.cancelRequested),
  };
}

function actionButton(verb, taskId) {
  const button = element("button", verb === "retry" ? "Retry" : "Cancel", verb === "cancel" ? "danger" : "");
  button.type = "button";
  button.setAttribute("aria-label", `${verb === "retry" ? "Retry" : "Cancel"} task ${taskId}`);
  button.addEventListener("click", () => act(verb, taskId));
  return button;
}

function actionCell(task) {
  const cell = element("td");
  const may = allowed(task);
  if (may.retry) cell.append(actionButton("retry", task.id));
  if (may.cancel) cell.append(actionButton("cancel", task.id));
  return cell;
}

function taskHead(taskId) {
  const head = element("th");
  head.scope = "row";
  const link = idNode(taskId, "a");
  link.href = `#/task/${encodeURIComponent(taskId)}`;
  head.append(link);
  return head;
}

async function refreshList() {
  const status = state.status;
  const query = new URLSearchParams({ status, limit: String(PAGE_SIZE) });
  const cursor = state.cursors[state.page];
  if (cursor) query.set("cursor", cursor);
  const answer = await api("GET", `/tasks?${query}`);
  if (status !== state.status) return; // the operator switched lists meanwhile
  if (!answer.ok) { setProblem("list", describe(`listing ${status} tasks`, answer)); return; }
  setProblem("list", null);
  const tasks = (answer.body && answer.body.tasks) || [];
  state.nextCursor = answer.body ? answer.body.nextCursor : null;
  sync($("tasks").tBodies[0], tasks, (task) => task.id, (task) => {
    const row = element("tr");
    row.dataset.taskId = task.id;
    return row;
  }, (row, task) => {
    if (task.id === state.taskId) row.setAttribute("aria-current", "true"); else row.removeAttribute("aria-current");
    const shown = [task.type, task.status, task.attempts, task.maxAttempts, task.updatedAt, task.lastError];
    fill(row, shown, () => [
      taskHead(task.id), element("td", task.type || "-"), element("td", `${task.attempts}/${task.maxAttempts}`),
      cellOf(timeNode(task.updatedAt)), element("td", task.lastError || "-", "error-text"), actionCell(task),
    ]);
  });
  const empty = $("tasks-empty");
  empty.hidden = tasks.length > 0;
  empty.textContent = state.page === 0 ? `No ${status} tasks.` : "No more tasks on this page.";
  $("older").disabled = !state.nextCursor;
  $("newest").disabled = state.page === 0;
  $("page-number").textContent = `page ${state.page + 1}`;
}

function cellOf(...content) {
  const node = element("td");
  node.append(...content);
  return node;
}

function showList(status) {
  if (state.status !== status) {
    state.status = status;
    state.cursors = [null];
    state.page = 0;
    $("tasks").tBodies[0].replaceChildren();
  }
  $("list-title").textContent = `${status[0]}${status.slice(1).toLowerCase()} tasks`;
  $("tasks-caption").textContent = `${status} tasks, most recently updated first`;
  $("retry-all").hidden = status !== "FAILED";
  for (const link of document.querySelectorAll(".tabs a")) {
    if (link.dataset.status === status) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

// --- One task -----------------------------------------------------------------------------------

function historyEntry(entry) {
  const item = element("li", null, `entry ${entry.kind || "attempt"}`);
  if ((entry.kind || "attempt") === "attempt") {
    const ran = seconds(entry.startedAt, entry.finishedAt);
    item.append(timeNode(entry.startedAt), element("strong", ` Attempt ${entry.attempt} `),
      badge(entry.outcome), element("span", ran === null ? " still running" : ` ran ${ran} s`, "muted"));
    if (entry.error) item.append(element("p", entry.error, "error-text"));
  } else {
    const verb = { retry: "Retried", cancel: "Cancelled", cancel_requested: "Cancel requested",
      expired: "Expired before it started" }[entry.kind] || entry.kind;
    item.append(timeNode(entry.at), element("strong", ` ${verb} `));
    // An expiry is no one's action: it has neither `by` nor `fromStatus`.
    if (entry.by) item.append(element("span", `by ${entry.by}`));
    if (entry.fromStatus) item.append(element("span", ` (was ${entry.fromStatus})`, "muted"));
  }
  return item;
}

// A heartbeat's progress: a bar for {"done", "total"}, else its JSON as text.
function progressFact(progress) {
  const group = element("div");
  group.dataset.fact = "progress";
  const value = element("dd");
  if (progress === null || progress === undefined) {
    value.textContent = "-";
  } else if (typeof progress === "object" && typeof progress.done === "number" && typeof progress.total === "number"
      && progress.total > 0) {
    const bar = document.createElement("progress");
    bar.max = progress.total;
    bar.value = progress.done;
    value.append(bar, element("span", ` ${progress.done} of ${progress.total}`));
  } else {
    value.textContent = JSON.stringify(progress);
  }
  group.append(element("dt", "Progress"), value);
  return group;
}

function renderTask(view) {
  const title = $("task-id");
  if (title.textContent !== view.id) title.replaceChildren(...idNode(view.id).childNodes);
  $("task-status").replaceWith(Object.assign(badge(view.status), { id: "task-status" }));
  const facts = [
    ["Type", view.type || "-"], ["Attempts", `${view.attempts} of ${view.maxAttempts}`],
    ["Created", timeNode(view.createdAt)], ["Updated", timeNode(view.updatedAt)],
    ["Finished", timeNode(view.finishedAt)], ["Next attempt", timeNode(view.nextAttemptAt)],
    ["Not before", timeNode(view.notBefore)], ["Start by", timeNode(view.startBy)],
    ["Cancel requested", view.cancelRequested ? "yes" : "no"],
    ["Last error", element("span", view.lastError || "-", view.lastError ? "error-text" : "")],
  ];
  $("task-facts").replaceChildren(...facts.map(([name, value]) => {
    const group = element("div");
    const dd = element("dd");
    dd.append(value);
    group.append(element("dt", name), dd);
    return group;
  }), progressFact(view.progress));
  $("task-history").replaceChildren(...(view.history || []).map(historyEntry));
  $("task-payload").textContent = JSON.stringify(view.payload, null, 2);
  // A result still to come reads "none yet"; a task that ended without one (failed, cancelled) has none.
  $("task-result").textContent = view.result === null || view.result === undefined
    ? (FINAL.includes(view.status) ? "none" : "none yet") : JSON.stringify(view.result, null, 2);
  const may = allowed(view);
  $("task-retry").hidden = !may.retry;
  $("task-cancel").hidden = !may.cancel;
  const none = $("task-no-action");
  none.hidden = may.retry || may.cancel;
  setText(none, none.hidden ? "" : noActionText(view));
  $("task").hidden = false;
}

// Why a task offers neither Retry nor Cancel, in words.
function noActionText(view) {
  if (view.status === "COMPLETED") return "No action: a COMPLETED task is final.";
  if (view.status === "PROCESSING") return "No action: a cancel is requested; the running attempt decides.";
  if (String(view.lastError || "").startsWith(POISON_PREFIX)) {
    return "No action: recorded from a poison message, it has no payload to run again; publish it again.";
  }
  return `No action for a ${view.status} task.`;
}

async function refreshTask() {
  const taskId = state.taskId;
  if (taskId === null) return;
  const answer = await api("GET", `/tasks/${encodeURIComponent(taskId)}`);
  if (taskId !== state.taskId) return;
  if (answer.ok) {
    setProblem("task", null);
    renderTask(answer.body);
    if (state.focusTask) { state.focusTask = false; $("task-title").focus(); } // where a screen reader should go
    return;
  }
  setProblem("task", describe(`reading task "${taskId}"`, answer, taskId));
  if (answer.status === 404) $("task").hidden = true;
}

// Copies the open task's whole id, however it wraps on screen.
async function copyTaskId() {
  const taskId = state.taskId;
  if (taskId === null) return;
  try {
    await navigator.clipboard.writeText(taskId);
    say(`Copied the id of task "${taskId}".`, "ok");
  } catch (error) {
    getSelection().selectAllChildren($("task-id"));
    say("The browser did not allow copying: the id is selected, copy it with the keyboard.", "refused");
  }
}

// --- Buttons ------------------------------------------------------------------------------------

async function act(verb, taskId) {
  await guarded(async () => {
    const answer = await api("POST", `/tasks/${encodeURIComponent(taskId)}/${verb}`);
    if (answer.ok) {
      const view = answer.body || {};
      const done = verb === "retry" ? "Retry accepted" : view.cancelRequested && view.status === "PROCESSING"
        ? "Cancel requested; the running attempt finishes first" : "Cancelled";
      say(`${done} (${answer.status}): task "${taskId}" is now ${view.status}.`, "ok");
      if (taskId === state.taskId) renderTask(view);
    } else {
      say(describe(`${verb === "retry" ? "retrying" : "cancelling"} task "${taskId}"`, answer, taskId), "refused");
    }
    await refresh();
  });
}

async function retryAllFailed() {
  await guarded(async () => {
    const preview = await api("POST", "/retries", { status: "FAILED", limit: BULK_LIMIT, dryRun: true });
    if (!preview.ok) { say(describe("counting the failed tasks", preview), "refused"); return; }
    const matched = preview.body.matched || [];
    if (matched.length === 0) { say("There are no FAILED tasks to retry.", "ok"); return; }
    const many = matched.length >= BULK_LIMIT ? `the first ${BULK_LIMIT}` : String(matched.length);
    const text = `${many} FAILED task(s) will start over with a fresh attempt budget: ` +
      matched.slice(0, 5).join(", ") + (matched.length > 5 ? `, and ${matched.length - 5} more.` : ".");
    if (!(await confirmed("Retry all failed tasks?", text, `Retry ${many} task(s)`, "Keep them"))) {
      say("Nothing was retried.", "");
      return;
    }
    const answer = await api("POST", "/retries", { status: "FAILED", limit: BULK_LIMIT, dryRun: false });
    if (!answer.ok) { say(describe("retrying the failed tasks", answer), "refused"); return; }
    const { retried = [], skipped = [] } = answer.body;
    const reasons = skipped.map((s) => `${s.id}: ${s.reason}`).join("; ");
    say(`Retried ${retried.length} task(s)` + (skipped.length ? `; skipped ${skipped.length} (${reasons}).` : "."),
      "ok");
    await refresh();
  });
}

// The confirmation dialog, worded for the action; true when the operator confirmed.
async function confirmed(title, text, yes, no) {
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-yes").textContent = yes;
  $("confirm-no").textContent = no;
  const dialog = $("confirm");
  dialog.returnValue = "";
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  return dialog.returnValue === "confirm";
}

// --- Task types ---------------------------------------------------------------------------------

function optionsText(options) {
  const pairs = Object.entries(options || {})
    .map(([name, value]) => `${name}=${typeof value === "object" ? JSON.stringify(value) : value}`);
  return pairs.length ? pairs.join(" ") : "-";
}

function typeButton(entry) {
  const verb = entry.paused ? "resume" : "pause";
  const label = verb === "pause" ? "Pause" : "Resume";
  const button = element("button", label, verb === "pause" ? "danger" : "");
  button.type = "button";
  button.setAttribute("aria-label", `${label} type ${entry.name}`);
  button.addEventListener("click", () => changeType(verb, entry.name));
  return button;
}

// GET /types: each type's pause and cap. An API without it (404) leaves the table to the throughput's types.
async function refreshTypes() {
  const answer = await api("GET", "/types");
  if (routeMissing(answer)) {
    state.types = null;
    setProblem("types", null);
  } else if (!answer.ok) {
    setProblem("types", describe("reading the task types", answer));
    return;
  } else {
    setProblem("types", null);
    state.types = (answer.body && answer.body.types) || [];
  }
  renderTypes();
}

function duration(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "-";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

// One type's (or every type's) last hour from the throughput: sums, completed a minute lately, p95s.
function figuresOf(name) {
  const throughput = state.throughput;
  const series = throughput && throughput.perMinute && throughput.perMinute.series;
  const kinds = series && series[name];
  const latency = (throughput && throughput.latency && throughput.latency[name]) || {};
  if (!kinds || typeof kinds !== "object") return { hour: null, perMinute: "-", p95: "-" };
  const completed = Array.isArray(kinds.completed) ? kinds.completed : [];
  const recent = completed.slice(-5);
  const rate = recent.length ? total(recent) / recent.length : 0;
  const p95 = (figure) => duration(figure && figure.p95);
  return {
    hour: ["completed", "failed", "retried", "accepted"].map((kind) => [kind, total(kinds[kind])]),
    perMinute: rate.toFixed(1),
    p95: `attempt ${p95(latency.attemptMs)}; end to end ${p95(latency.endToEndMs)}`,
  };
}

function hourList(hour) {
  if (!hour) return [element("span", "-", "muted")];
  const list = element("ul", null, "counters");
  // A kind's class (failed: red) only when some happened, so a quiet hour reads quiet.
  list.append(...hour.map(([kind, value]) => element("li", `${value} ${kind}`, value > 0 ? kind : "")));
  return [list];
}

function typeRow(name) {
  const row = element("tr");
  row.dataset.type = name;
  const head = element("th");
  head.scope = "row";
  head.append(idNode(name));
  const labels = ["State", "Running / cap", "Options", "Last hour", "Completed / min", "p95 latency", "Action"];
  row.append(head, ...labels.map((label) => cell(label)));
  return row;
}

function updateTypeRow(row, entry, figures) {
  const cells = row.querySelectorAll("td");
  row.classList.toggle("paused", Boolean(entry && entry.paused));
  let shownState = "-";
  if (entry) {
    shownState = entry.paused
      ? `Paused by ${entry.pausedBy} at ${when(entry.pausedAt)} (in effect by ${when(entry.effectiveBy)})`
      : "Running";
  }
  const cap = entry && entry.options ? entry.options.concurrency : undefined;
  const running = !entry || entry.running === null || entry.running === undefined || cap === undefined
    ? "-" : `${entry.running}/${cap}`;
  setText(cells[0], shownState);
  setText(cells[1], running);
  setText(cells[2], entry ? optionsText(entry.options) : "-");
  const hour = JSON.stringify(figures.hour);
  if (cells[3].dataset.shown !== hour) { cells[3].dataset.shown = hour; cells[3].replaceChildren(...hourList(figures.hour)); }
  setText(cells[4], figures.perMinute);
  setText(cells[5], figures.p95);
  const paused = entry ? String(Boolean(entry.paused)) : "";
  if (cells[6].dataset.shown !== paused) {
    cells[6].dataset.shown = paused;
    cells[6].replaceChildren(...(entry ? [typeButton(entry)] : []));
  }
}

function renderTypes() {
  const listed = state.types || [];
  const throughput = state.throughput;
  const series = (throughput && throughput.perMinute && throughput.perMinute.series) || {};
  const byName = new Map(listed.map((entry) => [entry.name, entry]));
  const names = [...listed.map((entry) => entry.name),
    ...Object.keys(series).filter((name) => name !== "total" && !byName.has(name)).sort()];
  sync($("types").tBodies[0], names, (name) => name, typeRow,
    (row, name) => updateTypeRow(row, byName.get(name), figuresOf(name)));
  const foot = $("types").tFoot;
  sync(foot, "total" in series ? ["total"] : [], () => "total", () => {
    const row = typeRow("total");
    row.querySelector("th").replaceChildren("All types");
    return row;
  }, (row) => updateTypeRow(row, null, figuresOf("total")));
}

// What a pause or resume did, in words.
function typeAnswer(verb, status, entry) {
  const name = `task type "${entry.name}"`;
  if (verb === "pause") {
    if (!entry.changed) {
      return `Nothing changed (${status}): ${name} was already paused by ${entry.pausedBy} at ${when(entry.pausedAt)}.`;
    }
    return `Paused (${status}): ${name} starts no attempt from ${when(entry.effectiveBy)} (consumers see a pause ` +
      "within 5 s); attempts already started finish, and publishing still accepts its tasks.";
  }
  if (!entry.changed) return `Nothing changed (${status}): ${name} was not paused.`;
  return `Resumed (${status}): ${name} runs again (consumers see it within 5 s).`;
}

async function changeType(verb, name) {
  await guarded(async () => {
    const question = verb === "pause"
      ? [`Pause task type "${name}"?`, `No attempt of "${name}" starts until it is resumed (consumers see the ` +
        "pause within 5 s). Attempts already started finish, and publishing still accepts its tasks.",
      `Pause ${name}`, "Keep it running"]
      : [`Resume task type "${name}"?`, `Tasks of "${name}" start again (consumers see it within 5 s).`,
        `Resume ${name}`, "Keep it paused"];
    if (!(await confirmed(...question))) { say(`Nothing was changed: task type "${name}" is as it was.`, ""); return; }
    const answer = await api("POST", `/types/${encodeURIComponent(name)}/${verb}`);
    if (answer.ok) say(typeAnswer(verb, answer.status, answer.body || {}), "ok");
    else say(describe(`${verb === "pause" ? "pausing" : "resuming"} task type "${name}"`, answer), "refused");
    await refresh();
  });
}

// --- Stuck tasks --------------------------------------------------------------------------------

// The stuck list's pages: the cursor each page starts at, and the next page's.
const stuck = { cursors: [null], page: 0, next: null };

async function refreshStuck() {
  const query = new URLSearchParams();
  const cursor = stuck.cursors[stuck.page];
  if (cursor) query.set("cursor", cursor);
  const answer = await api("GET", `/stuck${cursor ? `?${query}` : ""}`);
  const empty = $("stuck-empty");
  if (routeMissing(answer)) {
    setProblem("stuck", null);
    $("stuck").tBodies[0].replaceChildren();
    empty.hidden = false;
    setText(empty, "This API does not look for stuck tasks (an older server: GET /stuck is missing).");
    stuck.next = null;
  } else if (!answer.ok) {
    setProblem("stuck", describe("looking for stuck tasks", answer));
    return;
  } else {
    setProblem("stuck", null);
    const body = answer.body || {};
    const tasks = Array.isArray(body.tasks) ? body.tasks : [];
    stuck.next = body.next || null;
    sync($("stuck").tBodies[0], tasks, (task) => task.id, (task) => {
      const row = element("tr");
      row.dataset.taskId = task.id;
      return row;
    }, (row, task) => fill(row, [task.type, task.status, task.reason, task.since], () => [
      taskHead(task.id), element("td", task.type || "-"), cellOf(badge(task.status)),
      element("td", task.reason || "-", "reason"), cellOf(timeNode(task.since)), actionCell(task),
    ]));
    empty.hidden = tasks.length > 0;
    const scanned = typeof body.scanned === "number" ? ` (${body.scanned} scanned)` : "";
    // A page is one bounded scan of the table: an empty one with a next page has not looked at every task.
    let none = "No more stuck tasks on this page.";
    if (stuck.next) none = `None stuck on this page${scanned}: the next page looks further.`;
    else if (stuck.page === 0) {
      none = `No stuck tasks: none is PENDING past the dispatch bound or PROCESSING past its lease${scanned}.`;
    }
    setText(empty, none);
  }
  $("stuck-first").hidden = $("stuck-next").hidden = stuck.page === 0 && !stuck.next;
  $("stuck-first").disabled = stuck.page === 0;
  $("stuck-next").disabled = !stuck.next;
}

// --- Schedules ----------------------------------------------------------------------------------

// A schedule's counters, as the API names them and as the page says them.
const COUNTERS = [
  ["fired", "fired", "Schedule firings"],
  ["skipped", "skipped", "Firings skipped (overlap)"],
  ["caughtUp", "caught up", "Firings caught up"],
  ["missed", "missed", "Firings missed (past the catch-up window)"],
  ["refused", "refused", "Firings refused"],
];

// An API without schedules gives no such figures: then neither they nor their title are shown.
function renderScheduleCounts(summed, sources) {
  $("schedule-counts-title").hidden = !COUNTERS.some(([name]) => name in summed);
  $("schedule-counts").replaceChildren(...COUNTERS.filter(([name]) => name in summed).map(([name, , label]) => {
    const group = element("div", null, `count counter-${name}`);
    group.dataset.counter = name;
    const value = element("dd", summed[name]);
    const source = sources[`schedules.${name}`];
    if (source) value.title = `${source.source}${source.exact === false ? " (approximate)" : ""}`;
    group.append(element("dt", label), value);
    return group;
  }));
}

// A UTC time as the wall clock of `zone` shows it, with the zone's offset then; null for a zone the browser lacks.
function inZone(iso, zone) {
  const moment = new Date(iso);
  if (!iso || Number.isNaN(moment.getTime())) return null;
  let parts;
  try {
    parts = new Intl.DateTimeFormat("en-CA", {
      timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
      second: "2-digit", hourCycle: "h23", timeZoneName: "longOffset",
    }).formatToParts(moment);
  } catch (error) {
    return null;
  }
  const part = Object.fromEntries(parts.map((p) => [p.type, p.value]));
  return `${part.year}-${part.month}-${part.day} ${part.hour}:${part.minute}:${part.second} ${part.timeZoneName}`;
}

function taskLink(taskId) {
  const link = element("a", taskId, "mono");
  link.href = `#/task/${encodeURIComponent(taskId)}`;
  return link;
}

// A cell of the schedules table; its label heads it where the table is laid out as cards (narrow windows).
function cell(label, ...content) {
  const node = element("td");
  node.dataset.label = label;
  node.append(...content);
  return node;
}

function timingText(view) {
  if (view.cron) return `cron ${view.cron}`;
  if (view.rate) return `every ${view.rate}`;
  return "-";
}

function nextFiring(view) {
  const next = (view.nextFirings || [])[0];
  if (view.paused) return [element("span", "none while paused", "muted")];
  if (!next) return [element("span", "none", "muted")];
  const local = inZone(next, view.timezone);
  const shown = [
    element("div", local === null ? `(zone ${view.timezone} unknown to this browser)` : `${local} ${view.timezone}`,
      "next-local"),
    element("div", `${utcText(next)} UTC`, "next-utc"),
  ];
  const later = (view.nextFirings || []).slice(1);
  if (later.length) shown[1].title = `Then (UTC): ${later.map(utcText).join(", ")}`;
  return shown;
}

function lastFiring(view) {
  const last = view.lastFiring;
  const shown = [];
  if (!last) shown.push(element("span", "never", "muted"));
  else {
    shown.push(timeNode(last.at), " ");
    if (last.status !== undefined) shown.push(badge(last.status || "gone"));
    const task = element("div");
    if (last.taskId) task.append(taskLink(last.taskId));
    shown.push(task);
  }
  // `overlap: skip` (or a full `buffer_one`) says why the latest firing did not fire, and which task it waited on.
  if (view.lastSkip) {
    const skip = element("div", `skipped ${when(view.lastSkip.at)}: waiting on `, "muted skip");
    skip.append(taskLink(view.lastSkip.waitingOn));
    shown.push(skip);
  }
  if (view.buffered) shown.push(element("div", `holding the firing of ${when(view.buffered)}`, "muted"));
  return shown;
}

function errorText(error) {
  if (!error) return "-";
  if (typeof error !== "object") return String(error);
  const fields = (error.details || []).filter((d) => d && d.field).map((d) => `${d.field}: ${d.message}`);
  return `${when(error.at)}: ${error.message}` + (fields.length ? ` (${fields.join("; ")})` : "");
}

function counterList(view) {
  const counts = view.counts || {};
  const list = element("ul", null, "counters");
  list.append(...COUNTERS.map(([name, words]) => {
    const value = counts[name] ?? 0;
    const item = element("li", `${words} ${value}`);
    item.dataset.counter = name;
    if ((name === "refused" || name === "missed") && value > 0) item.className = "error-text";
    return item;
  }));
  return list;
}

function scheduleButton(verb, view) {
  const label = { pause: "Pause", resume: "Resume", trigger: "Trigger" }[verb];
  const button = element("button", label, verb === "pause" ? "danger" : "");
  button.type = "button";
  button.setAttribute("aria-label", `${label} schedule ${view.id}`);
  button.addEventListener("click", () => changeSchedule(verb, view));
  return button;
}

function scheduleRow(view) {
  const row = element("tr");
  row.dataset.schedule = view.id;
  if (view.paused) row.className = "paused";
  const head = element("th");
  head.scope = "row";
  head.append(element("div", view.id, "mono"), element("div", `type ${view.type}`, "muted"));
  const buttons = element("div", null, "actions");
  // Only what the schedule's state allows: Pause on a running schedule, Resume on a paused one.
  buttons.append(scheduleButton(view.paused ? "resume" : "pause", view), scheduleButton("trigger", view));
  const timing = [element("div", timingText(view), "mono"), element("div", view.timezone)];
  if (view.overlap !== undefined) {
    timing.push(element("div", `overlap ${view.overlap}, catch-up ${view.catchupWindowSeconds} s`, "muted"));
  }
  if (view.source === "code") timing.push(element("div", "declared in the code", "muted"));
  row.append(
    head,
    cell("When", ...timing),
    cell("Next firing", ...nextFiring(view)),
    cell("State", view.paused ? "Paused" : "Running"),
    cell("Last firing", ...lastFiring(view)),
    cell("Counts", counterList(view)),
    cell("Last error", element("span", errorText(view.lastError), view.lastError ? "error-text" : "")),
    cell("Action", buttons),
  );
  return row;
}

// A listed schedule as its own view shows it when that could not be read: its summary's fields.
function fromSummary(summary) {
  return { ...summary, nextFirings: summary.nextFiring ? [summary.nextFiring] : [],
    lastFiring: summary.lastFiring ? { at: summary.lastFiring } : null };
}

// One page of schedules, then each one's own view (its last firing's status, last error, next firings).
async function refreshSchedules() {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  const cursor = schedules.cursors[schedules.page];
  if (cursor) query.set("cursor", cursor);
  const answer = await api("GET", `/schedules?${query}`);
  if (!answer.ok) { setProblem("schedules", describe("listing the schedules", answer)); return; }
  // The API lists in its table's order; each page is shown by id.
  const listed = ((answer.body && answer.body.schedules) || []).sort((a, b) => a.id.localeCompare(b.id));
  schedules.nextCursor = answer.body.nextCursor || null;
  const views = await Promise.all(listed.map((entry) => api("GET", `/schedules/${encodeURIComponent(entry.id)}`)));
  const unread = views.findIndex((view) => !view.ok && view.status !== 404);
  setProblem("schedules", unread < 0 ? null
    : describe(`reading schedule "${listed[unread].id}"`, views[unread]) + " Its row shows what the list gave.");
  const rows = [];
  listed.forEach((entry, n) => {
    // A 404: deleted between the list and its read.
    if (views[n].status !== 404) rows.push(scheduleRow(views[n].ok ? views[n].body : fromSummary(entry)));
  });
  $("schedules").tBodies[0].replaceChildren(...rows);
  $("schedules-empty").hidden = listed.length > 0 || schedules.page > 0;
  $("schedules-first").hidden = $("schedules-next").hidden = schedules.page === 0 && !schedules.nextCursor;
  $("schedules-first").disabled = schedules.page === 0;
  $("schedules-next").disabled = !schedules.nextCursor;
  $("schedules-page").textContent = `page ${schedules.page + 1}`;
  $("schedules-page").hidden = $("schedules-first").hidden;
}

// What a pause, resume or trigger of schedule `id` did, in words, with a link to the task a trigger created.
function scheduleAnswer(verb, id, answer) {
  const view = answer.body || {};
  const name = `schedule "${id}"`;
  if (verb === "trigger") {
    return [`Triggered: task "${view.id}" created (${answer.status}, ${view.status}). `, taskLink(view.id)];
  }
  if (view.changed === false) return [`Nothing changed (${answer.status}): ${name} was already ${verb}d.`];
  if (verb === "pause") {
    return [`Paused (${answer.status}): ${name} fires nothing until it is resumed; then its firings missed inside ` +
      `its catch-up window (${view.catchupWindowSeconds} s) fire once each, and older ones are counted as missed.`];
  }
  const next = (view.nextFirings || [])[0];
  return [`Resumed (${answer.status}): ${name} fires again` + (next ? `; next at ${utcText(next)} UTC.` : ".")];
}

function scheduleQuestion(verb, view) {
  const name = `schedule "${view.id}"`;
  const catchUp = `its catch-up window (${view.catchupWindowSeconds} s)`;
  if (verb === "pause") {
    return [`Pause ${name}?`, `It fires nothing until it is resumed; tasks it already published run as usual. On ` +
      `resume, firings missed inside ${catchUp} fire once each, oldest first; older ones are counted as missed.`,
    `Pause ${view.id}`, "Keep it running"];
  }
  if (verb === "resume") {
    return [`Resume ${name}?`, `It fires again at its times; firings missed while it was paused inside ${catchUp} ` +
      "fire once each, oldest first.", `Resume ${view.id}`, "Keep it paused"];
  }
  return [`Trigger ${name} now?`, `One firing now, outside its times: a task of type "${view.type}" with the ` +
    `schedule's payload, id "${view.id}@<now, UTC>.manual". Its own firings are unchanged.`,
  `Trigger ${view.id}`, "Do not trigger"];
}

async function changeSchedule(verb, view) {
  await guarded(async () => {
    if (!(await confirmed(...scheduleQuestion(verb, view)))) {
      say(`Nothing was done: schedule "${view.id}" is as it was.`, "");
      return;
    }
    const answer = await api("POST", `/schedules/${encodeURIComponent(view.id)}/${verb}`);
    const doing = { pause: "pausing", resume: "resuming", trigger: "triggering" }[verb];
    if (answer.ok) say(scheduleAnswer(verb, view.id, answer), "ok");
    else say(describe(`${doing} schedule "${view.id}"`, answer), "refused");
    await refresh();
  });
}

// --- Routing and the refresh loop ---------------------------------------------------------------

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [kind, ...rest] = hash.split("/");
  const argument = rest.join("/");
  if (kind === "task" && argument) {
    let id;
    try { id = decodeURIComponent(argument); } catch (error) { id = argument; }
    state.taskId = id;
    state.focusTask = true;
    $("search-id").value = id;
  } else {
    state.taskId = null;
    $("task").hidden = true;
    setProblem("task", null);
    if (kind === "list" && LISTS.includes(argument)) showList(argument);
    if (kind === "schedules") { $("schedules-section").scrollIntoView(); $("schedules-title").focus(); }
  }
  refresh();
}

async function refresh() {
  clearTimeout(state.timer);
  const round = ++state.round; // only the latest refresh schedules the next one
  if (document.hidden) return; // a hidden tab costs the API nothing; visibilitychange resumes
  await guarded(async () => {
    const work = [refreshStats(), refreshTypes(), refreshStuck(), refreshSchedules(), refreshTask()];
    if (state.page === 0) work.push(refreshList());
    await Promise.all(work);
    setProblem("page", null);
  });
  if (round === state.round) state.timer = setTimeout(refresh, REFRESH_MS);
}

async function loadInfo() {
  try {
    const response = await fetch("/console-info", { cache: "no-store" });
    const info = await response.json();
    $("api-url").textContent = info.apiUrl;
    $("signing").textContent = info.signed ? "(signed with your AWS credentials)" : "(unsigned: offline stack)";
  } catch (error) {
    $("api-url").textContent = "(unknown)";
  }
}

function start() {
  $("refresh-seconds").textContent = String(REFRESH_MS / 1000);
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("search-id").value.trim();
    if (id) location.hash = `#/task/${encodeURIComponent(id)}`;
  });
  $("older").addEventListener("click", () => {
    if (!state.nextCursor) return;
    state.cursors[state.page + 1] = state.nextCursor;
    state.page += 1;
    guarded(refreshList);
  });
  $("newest").addEventListener("click", () => { state.page = 0; guarded(refreshList); });
  $("retry-all").addEventListener("click", retryAllFailed);
  $("schedules-next").addEventListener("click", () => {
    if (!schedules.nextCursor) return;
    schedules.cursors[schedules.page + 1] = schedules.nextCursor;
    schedules.page += 1;
    guarded(refreshSchedules);
  });
  $("schedules-first").addEventListener("click", () => { schedules.page = 0; guarded(refreshSchedules); });

  $("stuck-next").addEventListener("click", () => {
    if (!stuck.next) return;
    stuck.cursors[stuck.page + 1] = stuck.next;
    stuck.page += 1;
    guarded(refreshStuck);
  });
  $("stuck-first").addEventListener("click", () => { stuck.page = 0; guarded(refreshStuck); });
  $("task-copy").addEventListener("click", copyTaskId);
  $("task-retry").addEventListener("click", () => state.taskId !== null && act("retry", state.taskId));
  $("task-cancel").addEventListener("click", () => state.taskId !== null && act("cancel", state.taskId));
  window.addEventListener("hashchange", route);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  showList(state.status);
  loadInfo();
  route();
}

start();
