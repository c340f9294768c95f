"""A local HTTP server speaking the Gemini API's batchEmbedContents: for the tests and the
search benchmark (and an offline demo of semantic search).

The real google-genai client is pointed at it (GEMINI_BASE_URL). It is the one stand-in
in the suite: Google's service cannot be reached from here. Its embeddings are, by
default, a deterministic bag of hashed words, so texts sharing words are near each
other; the search benchmark plugs in its own.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORD = re.compile(r"[a-z0-9]+")


def embed_text(text: str, dim: int) -> list[float]:
    vector = [0.0] * dim
    for word in WORD.findall(text.lower()):
        digest = hashlib.sha256(word.encode()).digest()
        index = int.from_bytes(digest[:4], "big") % dim
        vector[index] += 1.0 if digest[4] % 2 else -1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


class FakeGemini:
    """Records every request; `fail_with` answers the next calls with those statuses;
    `malformed` answers with a broken body."""

    def __init__(self, embedder=None):
        self.embedder = embedder or embed_text
        self.requests: list[dict] = []
        self.paths: list[str] = []
        self.api_keys: list[str] = []
        self.fail_with: list[int] = []
        self.malformed: str | None = None  # "missing", "short" or "garbage"
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.paths.append(self.path)
                fake.api_keys.append(self.headers.get("x-goog-api-key", ""))
                fake.requests.append(body)
                if fake.fail_with:
                    status = fake.fail_with.pop(0)
                    self.reply(status, {"error": {"code": status, "message": "slow down"}})
                    return
                self.reply(200, fake.answer(body))

            def reply(self, status: int, payload) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, body: dict):
        items = body.get("requests", [])
        if self.malformed == "garbage":
            return b"{not json"
        embeddings = [
            {
                "values": self.embedder(
                    item["content"]["parts"][0]["text"], item.get("outputDimensionality", 768)
                )
            }
            for item in items
        ]
        if self.malformed == "missing":
            embeddings = embeddings[:-1]
        if self.malformed == "short":
            embeddings = [{"values": e["values"][:10]} for e in embeddings]
        return {"embeddings": embeddings}

    @property
    def texts(self) -> list[str]:
        return [
            item["content"]["parts"][0]["text"]
            for body in self.requests
            for item in body["requests"]
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
