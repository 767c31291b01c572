// The message list: user bubbles and assistant replies, history rendering and scrolling.

import { h } from "./dom.js";
import { Reply, textOf } from "./reply.js";

const NEAR_BOTTOM_PX = 120;

export class MessageList {
  constructor(root, empty) {
    this.root = root;
    this.empty = empty;
    this.stick = true; // follow new text while the reader is at the bottom
    root.addEventListener("scroll", () => {
      this.stick = root.scrollHeight - root.scrollTop - root.clientHeight < NEAR_BOTTOM_PX;
    });
  }

  clear() {
    this.root.replaceChildren(this.empty);
    this.empty.hidden = false;
    this.stick = true;
  }

  addUser(text) {
    this.empty.hidden = true;
    const el = h("article", { class: "msg msg-user", "data-testid": "user-message" }, h("div", { class: "bubble" }, text));
    this.root.append(el);
    this.stick = true;
    this.scroll();
    return el;
  }

  /** A new live reply at the end of the list. */
  addReply(threadId) {
    this.empty.hidden = true;
    const reply = new Reply({ threadId, onChange: () => this.scroll() });
    this.root.append(reply.el);
    this.scroll();
    return reply;
  }

  /** Render a thread's stored messages; the assistant and tool messages after one user
   *  message form one reply. */
  showHistory(records) {
    this.clear();
    let reply = null;
    for (const record of records) {
      if (record.role === "user") {
        this.addUser(textOf(record.content));
        reply = null;
      } else if (record.role === "assistant" || record.role === "tool") {
        if (!reply) {
          this.empty.hidden = true;
          reply = new Reply({ live: false });
          this.root.append(reply.el);
        }
        reply.addRecord(record);
      }
    }
    this.stick = true;
    this.scroll();
  }

  scroll() {
    if (this.stick) this.root.scrollTop = this.root.scrollHeight;
  }
}
