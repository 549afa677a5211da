// Reference answers from the npm package croner for tests/e2e/test_cron_oracle.py.
// Reads JSON lines {"expr", "tz", "from" (epoch seconds), "count"} on stdin and writes one JSON
// line per input: {"times": [epoch seconds...]} (fewer than count when croner stops) or
// {"error": "..."} when croner refuses the expression. Vixie OR semantics for day-of-month and
// day-of-week: croner 10's default (domAndDow: false).
import { Cron } from "croner";
import { createInterface } from "node:readline";

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
const out = [];
for await (const line of lines) {
  if (!line.trim()) continue;
  const q = JSON.parse(line);
  try {
    const job = new Cron(q.expr, { timezone: q.tz || "UTC", domAndDow: false, paused: true });
    const runs = job.nextRuns(q.count, new Date(q.from * 1000));
    out.push(JSON.stringify({ times: runs.map((d) => Math.floor(d.getTime() / 1000)) }));
  } catch (e) {
    out.push(JSON.stringify({ error: String(e && e.message ? e.message : e) }));
  }
}
process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
