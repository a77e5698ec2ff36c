// The Halo spec's JavaScript streaming snippet (halo-sdk-chat-stream.txt), run with
// Node's global fetch against a real server. Usage:
//   node halo_stream.mjs <stream-url> <widget-key> [agent_id]
// Prints one JSON line: {"sessionId", "agentId", "fullText", "updates"}.
const [url, key, agentId] = process.argv.slice(2);

let updates = 0;
function updateChatBubble(_text) {
  updates += 1;
}

// ---- the spec's snippet, verbatim but for the URL, the key and an optional agent_id ----
const response = await fetch(url, {
  method: "POST",
  headers: {
    "Content-Type": "application/json",
    "Authorization": `Bearer ${key}`,
  },
  body: JSON.stringify({
    user_id: "user_123",
    message: "How do I set up event tracking?",
    ...(agentId ? { agent_id: agentId } : {}),
  }),
});

// Read metadata from response headers
const sessionId = response.headers.get("X-Session-Id");
const agentIdHeader = response.headers.get("X-Agent-Id");

const reader = response.body?.getReader();
const decoder = new TextDecoder();
let fullText = "";

while (true) {
  const { done, value } = await reader.read();
  if (done) break;
  const chunk = decoder.decode(value, { stream: true });
  fullText += chunk;
  // Update your UI with the partial response
  updateChatBubble(fullText);
}
// ---- end of the snippet ----

if (!response.ok) {
  console.error(`HTTP ${response.status}: ${fullText}`);
  process.exit(2);
}
console.log(JSON.stringify({ sessionId, agentId: agentIdHeader, fullText, updates }));
