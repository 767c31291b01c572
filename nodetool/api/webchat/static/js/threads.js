// The sidebar's thread list over /api/threads: list, open, rename (inline) and delete.

import { h, icon, relativeTime } from "./dom.js";

const PAGE = 50;

export function threadTitle(thread) {
  return (thread && thread.title) || "Untitled chat";
}

export class ThreadList {
  /** handlers: onOpen(id), onDeleted(id), onRenamed(thread), onError(message). */
  constructor(api, listEl, moreButton, handlers) {
    this.api = api;
    this.listEl = listEl;
    this.moreButton = moreButton;
    this.handlers = handlers;
    this.threads = [];
    this.next = null;
    this.current = null;
    this.editing = null; // {id, mode: "rename" | "delete"}
    moreButton.addEventListener("click", () => this.loadMore());
  }

  async load() {
    const page = await this.api.get(`/api/threads?limit=${PAGE}`);
    this.threads = page.threads;
    this.next = page.next;
    this.render();
  }

  async loadMore() {
    if (!this.next) return;
    try {
      const page = await this.api.get(`/api/threads?limit=${PAGE}&cursor=${encodeURIComponent(this.next)}`);
      const known = new Set(this.threads.map((t) => t.id));
      this.threads.push(...page.threads.filter((t) => !known.has(t.id)));
      this.next = page.next;
      this.render();
    } catch (error) {
      this.handlers.onError(`Could not load older chats: ${error.message}`);
    }
  }

  get(id) {
    return this.threads.find((t) => t.id === id) || null;
  }

  /** Put a new or changed thread at the top. */
  upsert(thread) {
    this.threads = [thread, ...this.threads.filter((t) => t.id !== thread.id)];
    this.render();
  }

  setCurrent(id) {
    this.current = id;
    this.render();
  }

  render() {
    const items = this.threads.map((thread) => this.item(thread));
    if (!items.length) items.push(h("li", { class: "thread-empty" }, "No chats yet."));
    this.listEl.replaceChildren(...items);
    this.moreButton.hidden = !this.next;
    const input = this.listEl.querySelector(".thread-rename");
    if (input) {
      input.focus();
      input.select();
    }
  }

  item(thread) {
    const current = thread.id === this.current;
    const attrs = { class: "thread-item", "data-testid": "thread-item", dataset: { threadId: thread.id } };
    if (current) attrs["aria-current"] = "true";
    const editing = this.editing && this.editing.id === thread.id ? this.editing.mode : null;
    if (editing === "rename") return h("li", attrs, this.renameInput(thread));
    if (editing === "delete") return h("li", attrs, this.confirmDelete(thread));
    const link = h(
      "button",
      { type: "button", class: "thread-link", title: threadTitle(thread) },
      h("span", { class: "thread-name" }, threadTitle(thread)),
      h("span", { class: "thread-when" }, relativeTime(thread.updated_at)),
    );
    link.addEventListener("click", () => this.handlers.onOpen(thread.id));
    link.addEventListener("dblclick", () => this.edit(thread.id, "rename"));
    const rename = h("button", { type: "button", class: "icon-btn", "aria-label": "Rename chat", title: "Rename", "data-testid": "thread-rename" }, icon("pencil"));
    rename.addEventListener("click", () => this.edit(thread.id, "rename"));
    const remove = h("button", { type: "button", class: "icon-btn", "aria-label": "Delete chat", title: "Delete", "data-testid": "thread-delete" }, icon("trash"));
    remove.addEventListener("click", () => this.edit(thread.id, "delete"));
    return h("li", attrs, link, h("span", { class: "thread-actions" }, rename, remove));
  }

  edit(id, mode) {
    this.editing = mode ? { id, mode } : null;
    this.render();
  }

  renameInput(thread) {
    const input = h("input", {
      class: "thread-rename",
      value: thread.title || "",
      maxlength: "200",
      "aria-label": "Chat title",
      "data-testid": "thread-title-input",
    });
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      this.edit(null);
      const title = input.value.trim();
      if (!save || title === (thread.title || "")) return;
      try {
        const updated = await this.api.put(`/api/threads/${encodeURIComponent(thread.id)}`, { title: title || null });
        this.threads = this.threads.map((t) => (t.id === updated.id ? updated : t));
        this.render();
        this.handlers.onRenamed(updated);
      } catch (error) {
        this.handlers.onError(`Could not rename the chat: ${error.message}`);
      }
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") finish(true);
      else if (event.key === "Escape") {
        event.stopPropagation();
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
    return input;
  }

  confirmDelete(thread) {
    const yes = h("button", { type: "button", class: "btn btn-danger btn-small", "data-testid": "thread-delete-confirm" }, "Delete");
    const no = h("button", { type: "button", class: "btn btn-ghost btn-small" }, "Cancel");
    no.addEventListener("click", () => this.edit(null));
    yes.addEventListener("click", async () => {
      this.edit(null);
      try {
        await this.api.delete(`/api/threads/${encodeURIComponent(thread.id)}`);
        this.threads = this.threads.filter((t) => t.id !== thread.id);
        this.render();
        this.handlers.onDeleted(thread.id);
      } catch (error) {
        this.handlers.onError(`Could not delete the chat: ${error.message}`);
      }
    });
    setTimeout(() => no.focus(), 0);
    return h("div", { class: "thread-confirm" }, h("span", {}, `Delete “${threadTitle(thread)}”?`), yes, no);
  }
}
