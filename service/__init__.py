"""The BentoML service: thin wiring of HTTP endpoints onto the zoo runtime."""

from service.service import SslzooService

__all__ = ["SslzooService"]
