// REST calls to the server the page came from. The token (when the server enforces auth)
// goes in the Authorization header, never in a URL. Errors carry the server's own words
// (the OpenAI error envelope's message).

const TOKEN_KEY = "nodetool.token";

export const tokens = {
  get() {
    return localStorage.getItem(TOKEN_KEY) || "";
  },
  set(value) {
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
  },
};

export class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function errorFrom(response) {
  let message = `${response.status} ${response.statusText}`.trim();
  let code;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) {
      message = body.error.message;
      code = body.error.code || body.error.type;
    }
  } catch {
    /* not JSON: keep the status line */
  }
  return new ApiError(message, response.status, code);
}

export class Api {
  /** `onUnauthorized(message)` must resolve once a new token is stored (the call is retried). */
  constructor(onUnauthorized) {
    this.onUnauthorized = onUnauthorized;
  }

  async request(method, path, body) {
    for (;;) {
      const headers = { Accept: "application/json" };
      const token = tokens.get();
      if (token) headers.Authorization = `Bearer ${token}`;
      if (body !== undefined) headers["Content-Type"] = "application/json";
      let response;
      try {
        response = await fetch(path, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          cache: "no-store",
        });
      } catch {
        throw new ApiError("The server cannot be reached. Is `nodetool serve` still running?", 0);
      }
      if (response.status === 401) {
        const error = await errorFrom(response);
        await this.onUnauthorized(token ? `The server refused the token: ${error.message}` : "");
        continue;
      }
      if (!response.ok) throw await errorFrom(response);
      return response.status === 204 ? null : response.json();
    }
  }

  get(path) {
    return this.request("GET", path);
  }
  post(path, body = {}) {
    return this.request("POST", path, body);
  }
  put(path, body) {
    return this.request("PUT", path, body);
  }
  delete(path) {
    return this.request("DELETE", path);
  }

  /** Every page of a `{KEY: [...], next}` listing. */
  async all(path, key, limit) {
    const items = [];
    let cursor = null;
    do {
      const sep = path.includes("?") ? "&" : "?";
      const url = `${path}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
      const page = await this.get(url);
      items.push(...page[key]);
      cursor = page.next;
    } while (cursor);
    return items;
  }
}
