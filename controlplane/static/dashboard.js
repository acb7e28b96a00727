// Spaceyard dashboard: partial refresh (htmx-style) of [data-poll] fragments, live logs over SSE,
// and the app iframe following the stage. Plain DOM, no dependencies; pages work without it.
"use strict";

let currentStage = null;
const stageListeners = [];

function onStage(fn) { stageListeners.push(fn); }

function readStage(root) {
  const el = root.querySelector("[data-stage]");
  return el ? el.dataset.stage : null;
}

function setStage(stage) {
  if (!stage || stage === currentStage) return;
  const previous = currentStage;
  currentStage = stage;
  for (const fn of stageListeners) fn(stage, previous);
}

// Replace a fragment's content with the server's fresh HTML every data-interval ms.
function poll(el) {
  const every = Number(el.dataset.interval || 3000);
  const tick = async () => {
    try {
      const resp = await fetch(el.dataset.poll, { headers: { "X-Requested-With": "fetch" }, cache: "no-store" });
      if (resp.ok) {
        el.innerHTML = await resp.text();
        setStage(readStage(el));
      }
    } catch (_) { /* network blip: the next tick retries */ }
    setTimeout(tick, every);
  };
  setTimeout(tick, every);
}

// A log pane streams its endpoint. A new stream replays the log from its start, so the pane is cleared
// when one opens: a reload shows the whole log once. While the stage says the log is live
// (data-live-stages), a broken or ended stream resumes after the last event the pane shows: the browser
// reconnects by itself with its id (Last-Event-ID), and when the browser gives up (an error answer, a proxy's
// 503 while the control plane restarts) the pane opens the stream again with that id (?last_event_id=), so it
// keeps its lines and gets only the new ones. Otherwise it stays closed until the stage moves, which opens a
// new stream (a push may have built and started between two polls).
function logPane(pre) {
  const live = (pre.dataset.liveStages || "").split(/\s+/);
  let source = null;
  let retry = null;
  let lastId = "";

  const nearBottom = () => pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
  const open = (resumeAfter) => {
    clearTimeout(retry);
    if (source) source.close();
    const src = pre.dataset.logSrc;
    const sep = src.includes("?") ? "&" : "?";
    source = new EventSource(resumeAfter ? `${src}${sep}last_event_id=${encodeURIComponent(resumeAfter)}` : src);
    let fresh = !resumeAfter;  // only a new stream's first opening replays; a resumed one appends
    source.onopen = () => {
      if (fresh) pre.textContent = "";
      fresh = false;
    };
    source.onmessage = (ev) => {
      const stick = nearBottom();
      let line = ev.data;
      try { line = JSON.parse(ev.data).data; } catch (_) { /* plain text line */ }
      pre.append(line.endsWith("\n") ? line : line + "\n");  // API log lines carry their newline
      if (ev.lastEventId) lastId = ev.lastEventId;
      if (stick) pre.scrollTop = pre.scrollHeight;
    };
    source.onerror = () => {
      const reconnecting = source.readyState === EventSource.CONNECTING;
      if (live.includes(currentStage) && reconnecting) return;
      source.close();
      source = null;
      if (live.includes(currentStage)) retry = setTimeout(() => open(lastId), 1500);
    };
  };
  open();
  onStage(() => { lastId = ""; open(); });
}

// Show the app once it serves; reload it when a new version takes over.
function appFrame(frame) {
  const serving = ["RUNNING", "RUNNING_BUILDING", "RUNNING_APP_STARTING"];
  const empty = frame.parentElement.querySelector(".frame-empty");
  onStage((stage, previous) => {
    const up = serving.includes(stage);
    if (up && (!frame.getAttribute("src") || previous === "RUNNING_APP_STARTING")) {
      frame.setAttribute("src", frame.dataset.src);
    }
    if (empty) empty.hidden = up;
  });
}

// Fragments that change only with the stage (the file list after a push) are fetched again then.
function refreshOnStage(el) {
  onStage(async () => {
    try {
      const resp = await fetch(el.dataset.refreshOnStage, { cache: "no-store" });
      if (resp.ok) el.innerHTML = await resp.text();
    } catch (_) { /* keep the old list; the next stage change retries */ }
  });
}

// The delete button stays disabled until the full name is typed.
function confirmForm(form) {
  const input = form.querySelector("input[name=confirm]");
  const button = form.querySelector("button");
  const check = () => { button.disabled = input.value !== form.dataset.confirm; };
  input.addEventListener("input", check);
  check();
}

document.addEventListener("DOMContentLoaded", () => {
  currentStage = readStage(document);
  document.querySelectorAll("[data-poll]").forEach(poll);
  document.querySelectorAll("[data-log-src]").forEach(logPane);
  const frame = document.getElementById("app");
  if (frame) appFrame(frame);
  document.querySelectorAll("[data-refresh-on-stage]").forEach(refreshOnStage);
  document.querySelectorAll("form[data-confirm]").forEach(confirmForm);
});
