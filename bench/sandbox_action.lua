-- wrk script: one trivial action through POST /api/sandbox/run (dry run, nothing committed).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"kind":"action","action":"inc","payload":{},"storage":{"counter":{"n":1}},' ..
  '"handler":"def on_action(action, payload, storage):\\n    storage[\\"counter\\"][\\"n\\"] += 1\\n",' ..
  '"template":"<b>{{ counter.n }}</b>"}'
