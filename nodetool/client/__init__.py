"""The `nodetool chat` terminal client.

- `http`: the `openai` SDK streaming against `URL/v1`, the conversation kept client-side.
- `ws`: MessagePack frames over the `/chat` WebSocket, the thread kept on the server
  (`rest` reads threads and messages for `--thread`, `/threads`, `/history`).
- `render`: rich views of a turn (streamed Markdown, tool panels, workflow progress).
- `commands`: slash-command parsing and handling; `repl`: the interactive session;
  `oneshot`: `--message` for scripts and pipes.

Both transports yield frames in the `/chat` vocabulary, so one renderer serves both.
"""
