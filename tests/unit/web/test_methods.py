"""Which methods a path supports: every route of the path counts (OPTIONS answers and the Allow
header of a 405), the template with more literal segments names the resource."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from service.web.methods import OptionsMiddleware, allowed_methods


def make_app() -> FastAPI:
    app = FastAPI()
    router = APIRouter(prefix="/v1")

    @router.get("/items/{item_id}")
    @router.patch("/items/{item_id}")
    def item(item_id: str) -> dict:
        return {}

    @router.delete("/items/{item_id}")
    def delete_item(item_id: str) -> None:
        return None

    @router.get("/uploads/{upload_id}/{part}")
    def part(upload_id: str, part: str) -> dict:
        return {}

    @router.post("/uploads/{upload_id}/complete")
    def complete(upload_id: str) -> dict:
        return {}

    app.include_router(router)
    app.add_middleware(OptionsMiddleware, routes=app.routes)
    return app


def scope(path: str) -> dict:
    return {"type": "http", "method": "GET", "path": path, "root_path": ""}


def test_the_methods_of_every_route_of_the_path_in_a_fixed_order():
    # Three routes share the path: the union of their methods, and OPTIONS.
    assert allowed_methods(make_app().routes, scope("/v1/items/1")) == ["GET", "PATCH", "DELETE", "OPTIONS"]


def test_the_template_with_more_literal_segments_names_the_resource():
    app = make_app()
    assert allowed_methods(app.routes, scope("/v1/uploads/u1/complete")) == ["POST", "OPTIONS"]
    assert allowed_methods(app.routes, scope("/v1/uploads/u1/7")) == ["GET", "OPTIONS"]


def test_unknown_paths_have_no_methods():
    assert allowed_methods(make_app().routes, scope("/v1/nothing")) == []


def test_options_answers_204_with_the_allow_header():
    client = TestClient(make_app())
    response = client.options("/v1/uploads/u1/complete")
    assert response.status_code == 204
    assert response.headers["allow"] == "POST, OPTIONS"
    assert response.content == b""
    assert client.options("/v1/nothing").status_code in (404, 405)
