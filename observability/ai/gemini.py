"""Gemini embeddings through the google-genai SDK.

Texts go in batches of at most 100 (the batchEmbedContents limit). Rate limits (429)
and server errors (5xx) are retried with exponential back-off and full jitter; the
SDK's own retries are off so that one policy applies. An answer of the wrong shape
(a missing or wrongly sized vector) is an EmbeddingError: nothing half-embedded is
stored.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time

from django.conf import settings
from google import genai
from google.genai import errors, types

from observability.ai import EmbeddingError

logger = logging.getLogger(__name__)

MAX_BATCH = 100
RETRYABLE = {429, 500, 502, 503, 504}


@dataclasses.dataclass
class GeminiProvider:
    api_key: str
    model: str = "gemini-embedding-001"
    dim: int = 768
    batch_size: int = MAX_BATCH
    base_url: str | None = None
    max_attempts: int = 5
    base_delay_s: float = 1.0

    @classmethod
    def from_settings(cls) -> GeminiProvider:
        if not settings.GEMINI_API_KEY:
            raise EmbeddingError("EMBEDDING_PROVIDER=gemini needs GEMINI_API_KEY")
        return cls(
            api_key=settings.GEMINI_API_KEY,
            model=settings.GEMINI_EMBEDDING_MODEL,
            dim=settings.GEMINI_EMBEDDING_DIM,
            batch_size=min(settings.EMBEDDING_BATCH_SIZE, MAX_BATCH),
            base_url=settings.GEMINI_BASE_URL or None,
            max_attempts=settings.EMBEDDING_MAX_ATTEMPTS,
        )

    def __post_init__(self) -> None:
        options = types.HttpOptions(
            base_url=self.base_url,
            timeout=60_000,  # milliseconds
            retry_options=types.HttpRetryOptions(attempts=1),  # our own retry policy
        )
        self.client = genai.Client(api_key=self.api_key, http_options=options)

    def embed(self, texts: list[str], *, query: bool = False) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors += self._embed_batch(texts[start : start + self.batch_size], query)
        return vectors

    def _embed_batch(self, texts: list[str], query: bool) -> list[list[float]]:
        config = types.EmbedContentConfig(
            output_dimensionality=self.dim,
            task_type="RETRIEVAL_QUERY" if query else "RETRIEVAL_DOCUMENT",
        )
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self.client.models.embed_content(
                    model=self.model, contents=texts, config=config
                )
                return self._vectors(response, len(texts))
            except errors.APIError as exc:
                if exc.code not in RETRYABLE or attempt == self.max_attempts:
                    raise EmbeddingError(f"Gemini embeddings failed ({exc.code}): {exc}") from exc
                delay = random.uniform(0, self.base_delay_s * 2 ** (attempt - 1))  # noqa: S311
                logger.warning("Gemini answered %s; retry %s in %.1fs", exc.code, attempt, delay)
                time.sleep(delay)
            except (ValueError, TypeError, KeyError) as exc:  # the SDK could not parse it
                raise EmbeddingError(f"Gemini answered something unreadable: {exc}") from exc
        raise AssertionError("unreachable")

    def _vectors(self, response, expected: int) -> list[list[float]]:
        embeddings = response.embeddings or []
        if len(embeddings) != expected:
            raise EmbeddingError(
                f"Gemini returned {len(embeddings)} embeddings for {expected} texts"
            )
        vectors = [list(embedding.values or []) for embedding in embeddings]
        wrong = [len(v) for v in vectors if len(v) != self.dim]
        if wrong:
            raise EmbeddingError(
                f"Gemini returned vectors of {wrong[0]} dimensions, not {self.dim}"
            )
        return vectors
