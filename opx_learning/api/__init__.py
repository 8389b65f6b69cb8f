"""REST API (docs/rest-api.md): manual triggers, kill switch and audit over HTTP; `create_app()` builds the FastAPI app.

Run it with `opx-learning api [--host 127.0.0.1] [--port 8080]`; the OpenAPI document is
served at `/openapi.json` and browsable at `/docs`.
"""
