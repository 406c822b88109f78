"""JSON responses from Pydantic models, serialized once by pydantic-core.

Returning a model from a route makes FastAPI dump it to Python objects, validate them against
the response model and encode the result: the same work done twice. The route declares its
``response_model`` for the OpenAPI schema and returns ``model_response(...)`` instead.
"""

from __future__ import annotations

from fastapi.responses import Response
from pydantic import BaseModel


def model_response(model: BaseModel, status_code: int = 200) -> Response:
    return Response(model.model_dump_json().encode(), status_code=status_code, media_type="application/json")
