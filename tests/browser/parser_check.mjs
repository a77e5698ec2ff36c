// `node parser_check.mjs <path to sdk.js>`: feeds a Halo stream to the SDK's StreamParser
// cut at every pair of byte positions (inside UTF-8 characters, inside records) and prints
// the first split whose result differs from the unsplit one, or "ok".
import { pathToFileURL } from "node:url";

const { StreamParser } = await import(pathToFileURL(process.argv[2]).href);
const RS = "\x1e";
const action = { type: "citation", payload: { title: "Ünï — ✨", url: "https://x.example/a" } };
const body = `Grüße 👋 from Köln${RS}__ACTION__${JSON.stringify(action)}${RS} and ` +
  `more ✓ text${RS}__ACTIONS__${JSON.stringify([action])}${RS}`;
const bytes = new TextEncoder().encode(body);
const expected = "Grüße 👋 from Köln and more ✓ text";

for (let a = 0; a <= bytes.length; a += 1) {
  for (let b = a; b <= bytes.length; b += 1) {
    let deltas = "";
    const actions = [];
    const parser = new StreamParser({ onText: (d) => { deltas += d; },
                                      onAction: (x) => actions.push(x) });
    for (const part of [bytes.slice(0, a), bytes.slice(a, b), bytes.slice(b)]) {
      if (part.length) parser.push(part);
    }
    const ok = parser.text === expected && deltas === expected && actions.length === 1
      && JSON.stringify(actions[0]) === JSON.stringify(action) && parser.finished
      && JSON.stringify(parser.finalActions) === JSON.stringify([action])
      && parser.bytes === bytes.length && !deltas.includes("\ufffd");
    if (!ok) {
      console.log(JSON.stringify({ a, b, text: parser.text, deltas, actions }));
      process.exit(0);
    }
  }
}
// A failure after the headers: the error record is an error, never text or an action.
const failed = new StreamParser({ onAction: () => { throw new Error("not an action"); } });
failed.push(new TextEncoder().encode(
  `partial ${RS}__ACTION__{"type":"error","payload":{"code":"agent_unavailable","message":"x"}}${RS}`));
if (failed.text !== "partial " || !failed.error || failed.error.code !== "agent_unavailable"
    || failed.finished) {
  console.log(JSON.stringify({ error: failed.error, text: failed.text }));
  process.exit(0);
}
console.log("ok");
