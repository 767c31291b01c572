// The turns of the open thread: sends chat messages over the socket and routes the server's
// frames to the replies they belong to (docs/protocol.md §4: one `chunk` with `done: true` ends
// each turn; a new message stops the running turn first, so turns end in the order sent).

const JOB_FRAMES = new Set(["job_update", "node_update", "node_progress", "output_update"]);

export class Conversation {
  /** hooks: onBusy(bool), onTurnEnd(threadId), onError(message). */
  constructor(socket, messages, hooks) {
    this.socket = socket;
    this.messages = messages;
    this.hooks = hooks;
    this.pending = []; // live replies, oldest first
    this.interrupted = false;
    socket.addEventListener("frame", (event) => this.onFrame(event.detail));
  }

  get busy() {
    return this.pending.length > 0;
  }

  /** Send one user turn; false (and nothing shown) when the socket is not open. */
  send({ threadId, text, shownText, model, tools, workflow, params }) {
    const frame = { type: "message", role: "user", content: text, thread_id: threadId };
    if (workflow) {
      frame.workflow_id = workflow.id;
      frame.params = params;
    } else {
      if (model) frame.model = model;
      if (tools !== undefined) frame.tools = tools;
    }
    if (!this.socket.send(frame)) return false;
    this.messages.addUser(shownText ?? text);
    const reply = this.messages.addReply(threadId);
    if (workflow) reply.planWorkflow(workflow);
    this.pending.push(reply);
    this.hooks.onBusy(true);
    return true;
  }

  stop() {
    if (!this.busy) return false;
    return this.socket.send({ type: "stop" });
  }

  /** Replies of `threadId` still streaming (to show again when the thread is reopened). */
  live(threadId) {
    return this.pending.filter((reply) => reply.threadId === threadId);
  }

  /** The connection dropped: end the running replies with a note. */
  dropped() {
    if (!this.busy) return;
    for (const reply of this.pending.splice(0)) {
      reply.error("The connection dropped before the reply finished. The server keeps what was written so far.");
      reply.finish();
    }
    this.interrupted = true;
    this.hooks.onBusy(false);
  }

  replyFor(frame) {
    const reply = this.pending[0];
    if (!reply) return null;
    if (frame.thread_id && reply.threadId && frame.thread_id !== reply.threadId) return null;
    return reply;
  }

  end(reply) {
    reply.finish();
    this.pending = this.pending.filter((r) => r !== reply);
    if (!this.busy) this.hooks.onBusy(false);
    this.hooks.onTurnEnd(reply.threadId);
  }

  onFrame(frame) {
    const kind = frame.type;
    if (kind === "error") {
      this.onErrorFrame(frame);
      return;
    }
    if (kind === "pong") return;
    const reply = this.replyFor(frame);
    if (!reply) return; // another tab's or an ended turn's frame
    if (kind === "chunk") {
      if (frame.done) this.end(reply);
      else reply.appendText(frame.content || "");
    } else if (kind === "tool_call") {
      reply.toolCall(frame);
      if (frame.target === "client") {
        this.socket.send({ type: "tool_result", tool_call_id: frame.tool_call_id, ok: false, error: "this web page runs no client tools" });
      }
    } else if (kind === "tool_result") {
      reply.toolResult(frame);
    } else if (kind === "message") {
      reply.addRecord(frame, { live: true });
    } else if (JOB_FRAMES.has(kind)) {
      reply.job(frame);
    } else if (kind === "generation_stopped") {
      reply.note("Stopped.");
    }
  }

  /** An `error` frame: a failed turn (with thread_id), else a refused message or frame. */
  onErrorFrame(frame) {
    const message = frame.message || "The server reported an error.";
    if (frame.thread_id) {
      const reply = this.replyFor(frame);
      if (reply) reply.error(message);
      else this.hooks.onError(message);
      return;
    }
    const refused = this.pending.find((reply) => !reply.started);
    if (refused) {
      // The server refused the message before starting a turn: no done chunk will follow.
      refused.error(message);
      this.end(refused);
    } else {
      this.hooks.onError(message);
    }
  }
}
