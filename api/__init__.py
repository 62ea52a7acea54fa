"""The HTTP API: FastAPI app factory (`api.app.create_app`), routes, auth, error format, job views."""
