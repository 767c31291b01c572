// The model picker (/v1/models), the server-tools picker (/api/tools) and the workflow
// picker (/api/workflows) with a small form for the workflow's non-text inputs.
// Choices are remembered in localStorage; none of them is a secret.

import { h } from "./dom.js";

const KEYS = { model: "nodetool.model", tools: "nodetool.tools", workflow: "nodetool.workflow" };
const TEXT_INPUTS = ["nodetool.input.MessageInput", "nodetool.input.ChatInput", "nodetool.input.StringInput", "nodetool.input.TextInput"];
const INPUT_PREFIX = "nodetool.input.";

function stored(key, fallback) {
  try {
    const raw = localStorage.getItem(key);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

function remember(key, value) {
  if (value === null || value === undefined) localStorage.removeItem(key);
  else localStorage.setItem(key, JSON.stringify(value));
}

export class ModelPicker {
  constructor(select) {
    this.select = select;
    select.addEventListener("change", () => remember(KEYS.model, select.value || null));
  }

  async load(api) {
    const { data } = await api.get("/v1/models");
    const wanted = stored(KEYS.model, "");
    const options = data.map((m) => h("option", { value: m.id }, m.id));
    this.select.replaceChildren(h("option", { value: "" }, "Default model"), ...options);
    this.select.value = data.some((m) => m.id === wanted) ? wanted : "";
  }

  /** The model to send, or null for the server's default. */
  get value() {
    return this.select.value || null;
  }
}

export class ToolPicker {
  constructor(button, label, list, reset, note) {
    this.button = button;
    this.label = label;
    this.list = list;
    this.note = note;
    this.tools = [];
    this.defaults = [];
    this.chosen = stored(KEYS.tools, null); // null: the server's default (--tools)
    reset.addEventListener("click", () => {
      this.chosen = null;
      remember(KEYS.tools, null);
      this.render();
    });
    const popover = list.closest("[popover]");
    popover.addEventListener("beforetoggle", (event) => {
      if (event.newState === "open") this.place(popover);
    });
  }

  /** Open the popover above the composer, lined up with the button, inside the window. */
  place(popover) {
    const rect = this.button.getBoundingClientRect();
    const above = (this.button.closest(".composer-box") || this.button).getBoundingClientRect();
    const width = Math.min(360, window.innerWidth - 24);
    popover.style.left = `${Math.max(12, Math.min(rect.left, window.innerWidth - width - 12))}px`;
    popover.style.bottom = `${window.innerHeight - above.top + 8}px`;
  }

  async load(api) {
    const body = await api.get("/api/tools");
    this.tools = body.tools;
    this.defaults = body.default;
    const known = new Set(this.tools.map((t) => t.name));
    if (this.chosen) this.chosen = this.chosen.filter((name) => known.has(name));
    this.render();
  }

  get active() {
    return this.chosen ?? this.defaults;
  }

  /** The `tools` field to send: omitted (undefined) while the server default is in use. */
  get value() {
    return this.chosen === null ? undefined : [...this.chosen];
  }

  render() {
    const active = new Set(this.active);
    this.label.textContent = active.size ? `Tools · ${active.size}` : "Tools";
    this.note.textContent = this.chosen === null
      ? "Server default. The model may call the checked tools while it answers."
      : "Your choice for this browser. The model may call the checked tools.";
    const items = this.tools.map((tool) => {
      const box = h("input", { type: "checkbox", value: tool.name, checked: active.has(tool.name), "data-testid": "tool-option" });
      box.addEventListener("change", () => this.toggle(tool.name, box.checked));
      return h("li", {}, h("label", {}, box, h("span", { class: "tool-name" }, tool.name),
        h("span", { class: "tool-desc" }, tool.description || "")));
    });
    if (!items.length) items.push(h("li", { class: "popover-note" }, "This server offers no tools."));
    this.list.replaceChildren(...items);
  }

  toggle(name, on) {
    const next = new Set(this.active);
    if (on) next.add(name);
    else next.delete(name);
    this.chosen = this.tools.map((t) => t.name).filter((n) => next.has(n));
    remember(KEYS.tools, this.chosen);
    this.render();
  }

  setEnabled(enabled) {
    this.button.disabled = !enabled;
  }
}

export class WorkflowPicker {
  /** `onChange(workflow | null)` after the choice changes. */
  constructor(select, paramsEl, onChange) {
    this.select = select;
    this.paramsEl = paramsEl;
    this.onChange = onChange;
    this.workflows = [];
    this.fields = [];
    select.addEventListener("change", () => {
      remember(KEYS.workflow, select.value || null);
      this.show();
    });
  }

  async load(api) {
    const { workflows } = await api.get("/api/workflows");
    this.workflows = workflows;
    const wanted = stored(KEYS.workflow, "");
    const options = workflows.map((w) => h("option", { value: w.id }, `Workflow: ${w.name || w.id}`));
    this.select.replaceChildren(h("option", { value: "" }, "Chat"), ...options);
    this.select.hidden = workflows.length === 0;
    this.select.value = workflows.some((w) => w.id === wanted) ? wanted : "";
    this.show();
  }

  get current() {
    return this.workflows.find((w) => w.id === this.select.value) || null;
  }

  /** Whether the workflow has a text input the message goes to. */
  takesText(workflow = this.current) {
    return inputs(workflow).some((node) => TEXT_INPUTS.includes(node.type));
  }

  show() {
    const workflow = this.current;
    this.fields = [];
    if (!workflow) {
      this.paramsEl.replaceChildren();
      this.paramsEl.hidden = true;
      this.onChange(null);
      return;
    }
    const textNode = inputs(workflow).find((node) => TEXT_INPUTS.includes(node.type));
    const controls = inputs(workflow)
      .filter((node) => node !== textNode)
      .map((node) => this.field(node))
      .filter(Boolean);
    const about = workflow.description ? h("span", { class: "workflow-about" }, workflow.description) : null;
    this.paramsEl.replaceChildren(...[about, ...controls].filter(Boolean));
    this.paramsEl.hidden = !about && controls.length === 0;
    this.onChange(workflow);
  }

  field(node) {
    const data = node.data || {};
    const name = data.name;
    if (typeof name !== "string" || !name) return null;
    const kind = node.type.slice(INPUT_PREFIX.length);
    let input;
    if (kind === "BooleanInput") {
      input = h("input", { type: "checkbox", checked: Boolean(data.value) });
      this.fields.push({ name, read: () => input.checked });
    } else if (kind === "IntegerInput" || kind === "FloatInput") {
      input = h("input", { type: "number", value: String(data.value ?? 0), step: kind === "IntegerInput" ? "1" : "any" });
      if (typeof data.min === "number") input.min = String(data.min);
      if (typeof data.max === "number") input.max = String(data.max);
      this.fields.push({ name, read: () => (kind === "IntegerInput" ? parseInt(input.value, 10) : parseFloat(input.value)) });
    } else {
      input = h("input", { type: "text", value: typeof data.value === "string" ? data.value : "" });
      this.fields.push({ name, read: () => input.value });
    }
    input.dataset.param = name;
    return h("label", { title: data.description || "" }, `${data.label || name}`, input);
  }

  /** The params object for the run (numbers that do not parse are left out). */
  params() {
    const out = {};
    for (const { name, read } of this.fields) {
      const value = read();
      if (typeof value === "number" && Number.isNaN(value)) continue;
      out[name] = value;
    }
    return out;
  }
}

function inputs(workflow) {
  const nodes = (workflow && workflow.graph && workflow.graph.nodes) || [];
  return nodes.filter((node) => typeof node.type === "string" && node.type.startsWith(INPUT_PREFIX));
}
