// An independent gRPC client: loads proto/*.proto with @grpc/proto-loader and streams
// one StreamChat reply. Usage: node grpc_stream.mjs <target> <key> <agent> <message>
// Prints one JSON line: {"kinds": [...], "text": "...", "seqs": [...]}.
import path from "node:path";
import { fileURLToPath } from "node:url";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const protoRoot = path.resolve(here, "../../proto");
const [target, key, agent, message] = process.argv.slice(2);

const definition = protoLoader.loadSync("switchboard/v1/chat.proto", {
  includeDirs: [protoRoot],
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});
const pkg = grpc.loadPackageDefinition(definition);
const client = new pkg.switchboard.v1.ChatService(target, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
metadata.add("authorization", `Bearer ${key}`);

const kinds = [];
const seqs = [];
let text = "";
const call = client.StreamChat({ turn: { message, agent } }, metadata);
call.on("data", (reply) => {
  const event = reply.event;
  kinds.push(event.kind);
  seqs.push(event.seq);
  if (event.kind === "text_delta") text += event.text_delta.text;
});
call.on("error", (err) => {
  console.log(JSON.stringify({ error: err.code, details: err.details }));
  process.exit(2);
});
call.on("end", () => {
  console.log(JSON.stringify({ kinds, text, seqs }));
  client.close();
});
