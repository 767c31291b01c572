// The seed's /chat example with Node.js: MessagePack frames over ws://.../chat?api_key=TOKEN.
// Usage: node chat_client.mjs PORT TOKEN MODEL "message"
// Prints one JSON line {text, chunks, done, threadIds} once the done chunk arrived.
import * as msgpack from "@msgpack/msgpack";
import WebSocket from "ws";

const [port, token, model, content = "Hello world"] = process.argv.slice(2);
const socket = new WebSocket(`ws://127.0.0.1:${port}/chat?api_key=${encodeURIComponent(token)}`);
socket.binaryType = "arraybuffer";

const chunks = [];
const threadIds = new Set();
const timer = setTimeout(() => {
  console.error("timed out waiting for the done chunk");
  process.exit(2);
}, 20000);

socket.on("open", () => {
  socket.send(msgpack.encode({ role: "user", content, model }));
});

socket.on("message", (data, isBinary) => {
  if (!isBinary) {
    console.error(`expected a binary (MessagePack) frame, got text: ${data}`);
    process.exit(3);
  }
  const frame = msgpack.decode(new Uint8Array(data));
  if (frame.type === "error") {
    console.error(`error frame: ${frame.message}`);
    process.exit(4);
  }
  if (frame.type !== "chunk") return;
  threadIds.add(frame.thread_id);
  if (!frame.done) {
    chunks.push(frame.content);
    return;
  }
  clearTimeout(timer);
  console.log(
    JSON.stringify({ text: chunks.join(""), chunks: chunks.length, done: true, threadIds: [...threadIds] })
  );
  socket.close();
});

socket.on("close", (code) => {
  if (code !== 1000 && code !== 1005) {
    console.error(`socket closed with ${code}`);
    process.exit(5);
  }
});

socket.on("error", (err) => {
  console.error(`socket error: ${err.message}`);
  process.exit(6);
});
