"""Embedding providers: Gemini (google-genai), a local sentence-transformers model, or none.

Selected by EMBEDDING_PROVIDER. A provider turns texts into vectors of one dimension;
search compares vectors of the same model only.
"""

from __future__ import annotations

from typing import Protocol

from django.conf import settings


class EmbeddingError(RuntimeError):
    """The provider failed or answered something unusable; nothing was stored."""


class NoProvider(RuntimeError):
    """Semantic search needs an embedding provider (EMBEDDING_PROVIDER)."""


class NoVectorExtension(RuntimeError):
    """Semantic search needs the database's pgvector extension."""


NO_VECTOR_EXTENSION = (
    "Semantic search needs the pgvector extension (vector), which this database does not "
    "have. Keyword search works without it."
)


class Provider(Protocol):
    model: str  # the name stored with each embedding
    dim: int
    batch_size: int

    def embed(self, texts: list[str], *, query: bool = False) -> list[list[float]]:
        """One vector per text; `query` marks a search query rather than a document."""
        ...


# One provider (and HTTP client) per process and configuration: building the client
# costs more than a search.
_providers: dict[tuple, Provider] = {}


def get_provider() -> Provider | None:
    name = settings.EMBEDDING_PROVIDER
    if name == "none":
        return None
    config = (name, settings.GEMINI_API_KEY, settings.GEMINI_EMBEDDING_MODEL,
              settings.GEMINI_EMBEDDING_DIM, settings.GEMINI_BASE_URL)  # fmt: skip
    if config not in _providers:
        if name == "gemini":
            from observability.ai.gemini import GeminiProvider

            _providers[config] = GeminiProvider.from_settings()
        else:
            from observability.ai.local import LocalProvider

            _providers[config] = LocalProvider.from_settings()
    return _providers[config]


def require_provider() -> Provider:
    provider = get_provider()
    if provider is None:
        raise NoProvider(
            "Semantic search needs an embedding provider: set EMBEDDING_PROVIDER to gemini "
            "(with GEMINI_API_KEY) or local. Keyword search works without one."
        )
    return provider


def vector_literal(vector: list[float]) -> str:
    """pgvector's text form of a vector, to pass as a parameter and cast ::vector."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"
