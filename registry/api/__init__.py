"""The REST API: FastAPI over the service layer (``create_app``)."""

from registry.api.app import create_app

__all__ = ["create_app"]
