"""`POST /v1/embeddings`: text in, vectors out, from any provider that embeds.

`input` is a string or an array of strings; `encoding_format` is `float` (default) or `base64`
(little-endian float32, as OpenAI sends); `dimensions` goes to providers that honour it and is
a 400 elsewhere. A provider without embeddings is a 400 naming `model`.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from nodetool.api.metrics import ROUTE_KEY
from nodetool.api.openai_wire import dumps
from nodetool.api.wire.legacy import EmbeddingRequest
from nodetool.api.wire.problems import parse_body
from nodetool.errors import InvalidRequestError
from nodetool.providers.base import EmbeddingProvider, check_fields

router = APIRouter(tags=["openai"])
PATH = "/v1/embeddings"


def parse(body: bytes) -> EmbeddingRequest:
    return parse_body(EmbeddingRequest, body)


def encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


async def create_embeddings(request: Request) -> Response:
    request.scope[ROUTE_KEY] = PATH
    wire = parse(await request.body())
    providers = request.app.state.runtime.providers
    provider, model_id = await providers.resolve(wire.model, wire.provider)
    if not isinstance(provider, EmbeddingProvider):
        raise InvalidRequestError(
            f"The {provider.name} provider cannot create embeddings; use a model of a "
            "provider that can (GET /v1/models lists them with capability 'embeddings').",
            param="model",
            code="unsupported_model",
        )
    check_fields(provider, {"dimensions": wire.dimensions})
    inputs = [wire.input] if isinstance(wire.input, str) else wire.input
    result = await provider.embed(inputs, model_id, wire.dimensions)
    data: list[dict[str, Any]] = [
        {"object": "embedding", "index": i, "embedding": encode(v, wire.encoding_format)}
        for i, v in enumerate(result.vectors)
    ]
    usage = {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}
    body = {"object": "list", "data": data, "model": wire.model or model_id, "usage": usage}
    return Response(dumps(body), media_type="application/json")


router.add_route(PATH, create_embeddings, methods=["POST"])
