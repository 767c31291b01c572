// The token prompt shown when the server enforces auth (401 on REST, 1008 on the socket).
// The token is kept in localStorage; REST sends it as a Bearer header, the socket as api_key.

import { tokens } from "./api.js";

export class TokenPrompt {
  constructor(dialog) {
    this.dialog = dialog;
    this.form = dialog.querySelector("form");
    this.input = dialog.querySelector("input");
    this.reason = dialog.querySelector(".token-reason");
    this.waiters = [];
    this.onSaved = () => {};
    dialog.addEventListener("cancel", (event) => event.preventDefault()); // a token is needed
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = this.input.value.trim();
      if (!value) {
        this.reason.textContent = "Enter the token first.";
        return;
      }
      tokens.set(value);
      this.input.value = "";
      this.dialog.close();
      const waiters = this.waiters.splice(0);
      for (const resolve of waiters) resolve(value);
      this.onSaved(value);
    });
  }

  /** Ask for a token (once, however many callers wait); resolves when one is saved. */
  ask(message = "") {
    this.reason.textContent = message;
    if (!this.dialog.open) this.dialog.showModal();
    this.input.focus();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}
