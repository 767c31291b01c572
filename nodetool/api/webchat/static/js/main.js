// Boot and wiring: sidebar threads, pickers, composer, connection status, alerts, auth.

import { Api, tokens } from "./api.js";
import { TokenPrompt } from "./auth.js";
import { Conversation } from "./conversation.js";
import { h, icon } from "./dom.js";
import { MessageList } from "./messages.js";
import { ModelPicker, ToolPicker, WorkflowPicker } from "./pickers.js";
import { ChatSocket } from "./socket.js";
import { ThreadList, threadTitle } from "./threads.js";

const $ = (id) => document.getElementById(id);
const TITLE_CHARS = 60;

const ui = {
  app: $("app"),
  input: $("message-input"),
  send: $("send"),
  stop: $("stop"),
  title: $("thread-title"),
  status: $("status"),
  alerts: $("alerts"),
  forget: $("forget-token"),
  emptyHint: $("empty-hint"),
};

// ---- alerts: errors in words, in the page ------------------------------------------------

const alerts = new Map();

function showError(message, key = message) {
  clearError(key);
  const close = h("button", { type: "button", class: "icon-btn", "aria-label": "Dismiss" }, icon("close"));
  const el = h("div", { class: "alert", role: "alert", "data-testid": "error" }, h("p", {}, message), close);
  close.addEventListener("click", () => clearError(key));
  alerts.set(key, el);
  ui.alerts.append(el);
}

function clearError(key) {
  const el = alerts.get(key);
  if (el) el.remove();
  alerts.delete(key);
}

// ---- parts ---------------------------------------------------------------------------------

const prompt = new TokenPrompt($("token-dialog"));
const api = new Api((message) => prompt.ask(message));
const socket = new ChatSocket(() => tokens.get());
const messages = new MessageList($("messages"), $("empty"));
const models = new ModelPicker($("model-select"));
const tools = new ToolPicker($("tools-button"), $("tools-label"), $("tool-options"), $("tools-reset"), $("tools-note"));
const workflows = new WorkflowPicker($("workflow-select"), $("workflow-params"), onWorkflow);
const threads = new ThreadList(api, $("thread-list"), $("more-threads"), {
  onOpen: (id) => go(id),
  onDeleted: (id) => {
    if (id === state.threadId) go(null);
  },
  onRenamed: (thread) => {
    if (thread.id === state.threadId) setTitle(thread);
  },
  onError: (message) => showError(message),
});
const conversation = new Conversation(socket, messages, {
  onBusy: (busy) => {
    ui.stop.hidden = !busy;
    ui.send.hidden = busy;
  },
  onTurnEnd: (threadId) => refreshThread(threadId),
  onError: (message) => showError(message),
});

const state = { threadId: null, openSeq: 0, creating: null };

// ---- threads and routing -------------------------------------------------------------------

function threadFromHash() {
  const match = /^#\/thread\/(.+)$/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

function go(threadId) {
  const hash = threadId ? `#/thread/${encodeURIComponent(threadId)}` : "";
  if (location.hash !== hash) history.pushState(null, "", hash || location.pathname);
  route();
}

async function route() {
  ui.app.classList.remove("nav-open");
  const threadId = threadFromHash();
  const seq = ++state.openSeq;
  state.threadId = threadId;
  threads.setCurrent(threadId);
  messages.clear();
  setTitle(threadId ? threads.get(threadId) || { title: "…" } : null);
  if (!threadId) {
    ui.input.focus();
    return;
  }
  try {
    const id = encodeURIComponent(threadId);
    const [thread, records] = await Promise.all([
      api.get(`/api/threads/${id}`),
      api.all(`/api/messages?thread_id=${id}`, "messages", 1000),
    ]);
    if (seq !== state.openSeq) return;
    setTitle(thread);
    messages.showHistory(records);
    for (const reply of conversation.live(threadId)) messages.root.append(reply.el);
    clearError("thread");
  } catch (error) {
    if (seq !== state.openSeq) return;
    const gone = error.status === 404;
    showError(gone ? "That chat does not exist (any more)." : `Could not load this chat: ${error.message}`, "thread");
    if (gone) go(null);
  }
}

/** The top bar's and the window's title: the open thread's, or "New chat". */
function setTitle(thread) {
  ui.title.textContent = thread ? threadTitle(thread) : "New chat";
  document.title = thread ? `${threadTitle(thread)} · nodetool` : "nodetool chat";
}

async function refreshThread(threadId) {
  try {
    const thread = await api.get(`/api/threads/${encodeURIComponent(threadId)}`);
    threads.upsert(thread);
    if (thread.id === state.threadId) setTitle(thread);
  } catch {
    /* deleted meanwhile: the list catches up on the next load */
  }
}

// ---- composer ------------------------------------------------------------------------------

function onWorkflow(workflow) {
  const chat = !workflow;
  models.select.disabled = !chat;
  tools.setEnabled(chat);
  if (chat) ui.input.placeholder = "Message nodetool";
  else if (workflows.takesText(workflow)) ui.input.placeholder = `Input for “${workflow.name || workflow.id}”`;
  else ui.input.placeholder = `Press Enter to run “${workflow.name || workflow.id}”`;
  ui.emptyHint.textContent = chat
    ? "Replies stream in here. Pick a model above, or a workflow below."
    : `Each message runs the workflow “${workflow.name || workflow.id}”; you will see it work node by node.`;
}

function autosize() {
  ui.input.style.height = "auto";
  ui.input.style.height = `${ui.input.scrollHeight}px`;
}

async function send() {
  const workflow = workflows.current;
  const typed = ui.input.value.trim();
  if (!typed && !(workflow && !workflows.takesText(workflow))) return;
  const text = typed || `Run “${workflow.name || workflow.id}”`;
  if (!socket.isOpen) {
    showError("Not connected to the server, so nothing was sent. Your message is still in the box.", "send");
    return;
  }
  clearError("send");
  ui.input.value = "";
  autosize();
  const threadId = state.threadId || (await newThread(text));
  if (!threadId) {
    ui.input.value = typed;
    return;
  }
  const sent = conversation.send({
    threadId,
    text,
    model: models.value,
    tools: tools.value,
    workflow,
    params: workflow ? workflows.params() : undefined,
  });
  if (!sent) {
    showError("The connection dropped, so nothing was sent. Your message is still in the box.", "send");
    ui.input.value = typed;
  }
}

/** Create the thread a first message goes to (once, however fast messages are sent). */
function newThread(text) {
  if (!state.creating) {
    state.creating = api
      .post("/api/threads", { title: text.split("\n")[0].slice(0, TITLE_CHARS) })
      .then((thread) => {
        threads.upsert(thread);
        state.threadId = thread.id;
        state.openSeq += 1; // nothing to load: the thread is new
        history.pushState(null, "", `#/thread/${encodeURIComponent(thread.id)}`);
        threads.setCurrent(thread.id);
        setTitle(thread);
        return thread.id;
      })
      .catch((error) => {
        showError(`Could not start a new chat: ${error.message}`, "send");
        return null;
      })
      .finally(() => {
        state.creating = null;
      });
  }
  return state.creating;
}

// ---- connection ----------------------------------------------------------------------------

socket.addEventListener("state", ({ detail }) => {
  ui.status.dataset.state = detail.state;
  ui.status.querySelector(".status-text").textContent = detail.text;
  if (detail.state === "closed") conversation.dropped();
  if (detail.state === "open") {
    clearError("socket");
    if (conversation.interrupted && state.threadId) route();
    conversation.interrupted = false;
  }
});

socket.addEventListener("refused", async ({ detail }) => {
  conversation.dropped();
  if (!detail.auth) {
    showError(`The server refused the chat connection: ${detail.reason}.`, "socket");
    return;
  }
  const had = tokens.get();
  await prompt.ask(had ? `The server refused the token (${detail.reason}).` : "");
});

prompt.onSaved = () => {
  ui.forget.hidden = false;
  socket.reconnectNow();
};

// ---- events --------------------------------------------------------------------------------

function bind() {
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  ui.input.addEventListener("input", autosize);
  ui.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  ui.stop.addEventListener("click", () => conversation.stop());
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    if (ui.app.classList.contains("nav-open")) ui.app.classList.remove("nav-open");
    else if (conversation.busy) conversation.stop();
  });
  $("new-thread").addEventListener("click", () => go(null));
  $("menu").addEventListener("click", () => ui.app.classList.toggle("nav-open"));
  $("scrim").addEventListener("click", () => ui.app.classList.remove("nav-open"));
  ui.forget.hidden = !tokens.get();
  ui.forget.addEventListener("click", () => {
    tokens.set("");
    location.reload();
  });
  window.addEventListener("popstate", route);
}

async function load(what, task) {
  try {
    await task;
  } catch (error) {
    showError(`Could not load ${what}: ${error.message}`, what);
  }
}

async function boot() {
  bind();
  socket.connect();
  await load("the chat list", threads.load()); // asks for a token first when one is needed
  await Promise.all([
    load("the models", models.load(api)),
    load("the tools", tools.load(api)),
    load("the workflows", workflows.load(api)),
  ]);
  await route();
}

boot();
