"""`recall serve`: one memory behind an OpenAI-compatible HTTP API, with memory endpoints, API keys
mapped to namespaces, /health and /metrics. app.py builds the application; service.py runs the memory;
tenants.py holds the keys. Nothing is imported here, so the command can check its arguments before
torch loads."""
