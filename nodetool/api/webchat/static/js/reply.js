// One assistant reply: streamed Markdown text, tool-call cards and a workflow progress card.
// Built live from /chat frames, or from stored messages when a thread is opened.

import { h, icon, pretty } from "./dom.js";
import { renderInto } from "./markdown.js";

const FINISHED = new Set(["completed", "failed", "cancelled", "error"]);

function toolState(ok) {
  return ok ? ["ok", "done"] : ["failed", "failed"];
}

/** The short label of a workflow node: its type's last part and its input/output name. */
function nodeLabel(node) {
  const type = String(node.type || node.node_type || "node").split(".").pop();
  const name = node.data && typeof node.data.name === "string" ? node.data.name : "";
  return { type, name };
}

export class Reply {
  /** `onChange()` is called after visible changes (for scrolling). */
  constructor({ threadId = null, onChange = () => {}, live = true } = {}) {
    this.threadId = threadId;
    this.onChange = onChange;
    this.started = false;
    this.finished = false;
    this.segment = null; // {el, text}: the Markdown block text is streaming into
    this.cards = new Map(); // tool_call_id -> {el, state, result}
    this.workflow = null; // {el, state, nodes: Map, outputs}
    this.frame = 0;
    this.body = h("div", { class: "reply" });
    this.meta = h("div", { class: "reply-meta" });
    this.thinking = live ? h("div", { class: "thinking", "aria-label": "Waiting for the reply" }, h("span"), h("span"), h("span")) : null;
    this.body.append(...[this.thinking, this.meta].filter(Boolean));
    const avatar = h("div", { class: "avatar", "aria-hidden": "true" }, h("img", { src: "/ui/favicon.svg", alt: "" }));
    this.el = h("article", { class: "msg msg-assistant", "data-testid": "assistant-message" }, avatar, this.body);
  }

  // ---- text ---------------------------------------------------------------------------

  appendText(delta) {
    this.touch();
    if (!delta) return;
    if (!this.segment) this.segment = this.addBlock("");
    this.segment.text += delta;
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.paint();
      });
    }
  }

  addBlock(text) {
    const block = { el: h("div", { class: "md" }), text };
    this.body.insertBefore(block.el, this.meta);
    if (text) renderInto(block.el, text);
    return block;
  }

  paint() {
    if (this.segment) renderInto(this.segment.el, this.segment.text);
    this.onChange();
  }

  /** Close the streaming block; `text` (the stored message) wins over what was streamed. */
  endSegment(text) {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    if (typeof text === "string" && text) {
      if (!this.segment) this.segment = this.addBlock("");
      this.segment.text = text;
    }
    this.paint();
    this.segment = null;
  }

  // ---- tools ----------------------------------------------------------------------------

  toolCall({ tool_call_id: id, name, args, target }) {
    this.touch();
    this.endSegment();
    const card = this.card(id, name, target);
    card.args.textContent = pretty(args ?? {});
    this.onChange();
  }

  toolResult({ tool_call_id: id, name, ok, result, error }) {
    this.touch();
    const card = this.card(id, name);
    this.setResult(card, ok !== false, ok === false ? error || "the tool failed" : result);
  }

  card(id, name, target = "server") {
    let card = this.cards.get(id);
    if (card) return card;
    const state = h("span", { class: "card-state", dataset: { state: "running" } }, "running…");
    const args = h("pre", { "data-testid": "tool-args" });
    const result = h("pre", { "data-testid": "tool-result" }, "…");
    const el = h(
      "details",
      { class: "card tool", "data-testid": "tool-call", dataset: { toolCallId: id, tool: name || "" } },
      h("summary", {}, icon("wrench"), h("span", { class: "card-title" }, name || "tool"),
        h("span", { class: "card-kind" }, target === "client" ? "client tool" : "tool"), state),
      h("div", { class: "card-body" }, h("div", { class: "card-label" }, "Arguments"), args,
        h("div", { class: "card-label" }, "Result"), result),
    );
    this.body.insertBefore(el, this.meta);
    card = { el, state, args, result, done: false };
    this.cards.set(id, card);
    return card;
  }

  setResult(card, ok, value) {
    const [state, text] = toolState(ok);
    card.done = true;
    card.state.dataset.state = state;
    card.state.textContent = text;
    card.result.textContent = pretty(value ?? "");
    this.onChange();
  }

  // ---- stored messages ------------------------------------------------------------------

  /** A `message` frame or a stored message record of this reply. */
  addRecord(record, { live = false } = {}) {
    if (record.role !== "assistant" && record.role !== "tool") return;
    if (live) this.touch();
    if (record.role === "tool") {
      const card = this.card(record.tool_call_id, record.name);
      if (!card.done) {
        const failed = /^\{"ok": ?false/.test(String(record.content || ""));
        this.setResult(card, !failed, record.content);
      }
      return;
    }
    const text = textOf(record.content);
    if (live) this.endSegment(text);
    else if (text) this.addBlock(text);
    for (const call of record.tool_calls || []) {
      const fn = call.function || {};
      const card = this.card(call.id, fn.name);
      if (!card.args.textContent) card.args.textContent = pretty(fn.arguments || "{}");
    }
    this.setMeta(record);
    this.onChange();
  }

  setMeta(record) {
    const parts = [];
    if (record.workflow_id) parts.push(h("span", { class: "badge" }, `workflow ${record.workflow_id}`));
    if (record.model) parts.push(h("span", {}, record.provider ? `${record.model} · ${record.provider}` : record.model));
    if (parts.length) this.meta.replaceChildren(...parts);
  }

  // ---- workflows ------------------------------------------------------------------------

  /** Show the workflow's nodes (from its graph) before the job reports anything. */
  planWorkflow(workflow) {
    const state = h("span", { class: "card-state", dataset: { state: "queued" } }, "starting…");
    const nodes = h("ul", { class: "nodes" });
    const outputs = h("dl", { class: "outputs" });
    const el = h(
      "details",
      { class: "card workflow", "data-testid": "workflow-run", open: true },
      h("summary", {}, icon("flow"), h("span", { class: "card-title" }, workflow.name || workflow.id), state),
      h("div", { class: "card-body" }, nodes, outputs),
    );
    this.body.insertBefore(el, this.meta);
    this.workflow = { el, state, nodes, outputs, items: new Map() };
    for (const node of (workflow.graph && workflow.graph.nodes) || []) {
      if (/Comment$/.test(node.type || "")) continue;
      this.node(node.id, node);
    }
  }

  node(id, spec) {
    const flow = this.workflow;
    let item = flow.items.get(id);
    if (item) return item;
    const { type, name } = nodeLabel(spec);
    const status = h("span", { class: "node-status" }, "waiting");
    const el = h(
      "li",
      { class: "node", "data-testid": "workflow-node", dataset: { nodeId: id, state: "waiting" } },
      h("span", { class: "node-dot", "aria-hidden": "true" }),
      h("span", { class: "node-name" }, type, name ? h("small", {}, name) : null),
      status,
    );
    flow.nodes.append(el);
    item = { el, status, bar: null };
    flow.items.set(id, item);
    return item;
  }

  job(frame) {
    this.touch();
    if (!this.workflow) this.planWorkflow({ id: frame.workflow_id, name: frame.workflow_id });
    const flow = this.workflow;
    if (frame.type === "job_update") {
      flow.state.dataset.state = frame.status;
      flow.state.textContent = frame.status === "failed" && frame.error ? `failed: ${frame.error}` : frame.status;
      if (frame.status === "completed") flow.el.open = false;
    } else if (frame.type === "node_update") {
      const item = this.node(frame.node_id, { node_type: frame.node_type });
      item.el.dataset.state = frame.status;
      item.status.textContent = frame.error ? `${frame.status}: ${frame.error}` : frame.status;
    } else if (frame.type === "node_progress") {
      const item = this.node(frame.node_id, { node_type: "node" });
      if (!item.bar) {
        item.bar = h("progress", { max: 1, value: 0 });
        item.el.append(item.bar);
      }
      item.bar.max = frame.total || 1;
      item.bar.value = frame.progress || 0;
    } else if (frame.type === "output_update") {
      flow.outputs.append(h("dt", {}, frame.output_name || frame.node_id), h("dd", {}, h("pre", {}, pretty(frame.value))));
    }
    this.onChange();
  }

  // ---- end of the turn ------------------------------------------------------------------

  touch() {
    this.started = true;
    if (this.thinking) {
      this.thinking.remove();
      this.thinking = null;
    }
  }

  note(text) {
    this.body.insertBefore(h("p", { class: "reply-note" }, text), this.meta);
    this.onChange();
  }

  error(message) {
    this.touch();
    this.endSegment();
    this.body.insertBefore(h("p", { class: "reply-error", "data-testid": "error", role: "alert" }, message), this.meta);
    this.onChange();
  }

  finish() {
    if (this.finished) return;
    this.finished = true;
    this.touch();
    this.endSegment();
    for (const card of this.cards.values()) {
      if (!card.done) card.state.textContent = "no result";
    }
    if (this.workflow && !FINISHED.has(this.workflow.state.dataset.state)) {
      this.workflow.state.textContent = "ended";
    }
    if (!this.body.querySelector(".md, .card, .reply-error, .reply-note")) this.note("(no reply)");
  }
}

/** The text of a message's content: a string, or the text parts of a part list. */
export function textOf(content) {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .map((part) => (part && part.type === "text" ? part.text : part && part.type ? `[${part.type}]` : ""))
    .join("");
}
