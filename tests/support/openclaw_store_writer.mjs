// Plays OpenClaw 2026.6.x updating its own auth-profiles.json: ROUNDS load-update-save cycles
// through OpenClaw's real store code (updateAuthProfileStoreWithLock, under its own
// auth-profiles.json.lock), each adding one to a counter in a profile OpenClaw owns.
//
// usage: node openclaw_store_writer.mjs STORE_MODULE EXPORT_NAME AGENT_DIR ROUNDS
// Prints "ready" once the module is loaded, then waits for a line on stdin before starting,
// and prints "done <failures>" at the end.
import { pathToFileURL } from "node:url";
import readline from "node:readline";

const [modulePath, exportName, agentDir, roundsArg] = process.argv.slice(2);
const store = await import(pathToFileURL(modulePath).href);
const update = store[exportName];
if (typeof update !== "function") {
  console.error(`no function ${exportName} in ${modulePath}`);
  process.exit(2);
}
const rounds = Number(roundsArg);
const pause = new Int32Array(new SharedArrayBuffer(4));
const sleepSync = (ms) => Atomics.wait(pause, 0, 0, ms);

console.log("ready");
await new Promise((resolve) => readline.createInterface({ input: process.stdin }).once("line", resolve));
let failures = 0;
for (let i = 0; i < rounds; i += 1) {
  const result = await update({
    agentDir,
    updater: (current) => {
      const counter = current.profiles["openai:counter"];
      const n = counter && counter.type === "api_key" ? Number(counter.key) : 0;
      sleepSync(2 + Math.random() * 6); // a slow read-modify-write widens any race
      current.profiles["openai:counter"] = { type: "api_key", provider: "openai", key: String(n + 1) };
      return true;
    },
  });
  if (result === null) failures += 1; // OpenClaw gave up on its lock
  await new Promise((resolve) => setTimeout(resolve, Math.random() * 8));
}
console.log(`done ${failures}`);
