"""JSON responses from Pydantic models, serialized once by pydantic-core.

Returning a model from a route makes FastAPI dump it to Python objects, validate them against
the response model and encode the result: the same work done twice, and for a sync route the
validation runs in the thread pool, a second thread hand-over per request. The route declares
its ``response_model`` for the OpenAPI schema and returns ``model_response(...)`` instead.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response
from pydantic import BaseModel, TypeAdapter


def model_response(model: BaseModel, status_code: int = 200) -> Response:
    return Response(model.model_dump_json().encode(), status_code=status_code, media_type="application/json")


def adapted_response(adapter: TypeAdapter[Any], value: Any, status_code: int = 200) -> Response:
    """``value`` validated against ``adapter``'s type (a list of models, say) and serialized."""
    body = adapter.dump_json(adapter.validate_python(value))
    return Response(body, status_code=status_code, media_type="application/json")
