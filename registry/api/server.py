"""The ASGI app ``mbom serve`` runs: configured from the environment at import."""

from registry.api.app import create_app

app = create_app()
