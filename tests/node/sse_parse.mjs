// An independent SSE client: POSTs a JSON body with Node's fetch, feeds the response body
// to eventsource-parser chunk by chunk as it arrives, and prints one JSON line:
// {"status", "contentType", "events": [{"id", "event", "data"}], "comments": [...],
//  "errors": [...]}.
// Usage: node sse_parse.mjs <url> <bearer key> <json body>
import { createParser } from "eventsource-parser";

const [url, key, body] = process.argv.slice(2);
const events = [];
const comments = [];
const errors = [];
const parser = createParser({
  onEvent: (e) => events.push({ id: e.id ?? null, event: e.event ?? null, data: e.data }),
  onComment: (c) => comments.push(c),
  onError: (err) => errors.push(String(err.message ?? err)),
});

const response = await fetch(url, {
  method: "POST",
  headers: {
    Authorization: `Bearer ${key}`,
    "Content-Type": "application/json",
    Accept: "text/event-stream",
  },
  body,
});
const decoder = new TextDecoder();
for await (const chunk of response.body) {
  parser.feed(decoder.decode(chunk, { stream: true }));
}
parser.feed(decoder.decode());
console.log(JSON.stringify({
  status: response.status,
  contentType: response.headers.get("content-type"),
  events,
  comments,
  errors,
}));
