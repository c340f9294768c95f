"""The built-in web UI: server-rendered pages over the analytics, request and search
domains, signed in with Django accounts (docs/UI.md)."""
