"""The server base: health, DirectRoutes dispatch and its error answers."""

from __future__ import annotations

import httpx
from fastapi import HTTPException, Request

from nemo_gym_cli.servers import DirectRoutes, ServerSpec, create_server_app, read_json
from nemo_gym_cli.wire import JSONResponse

SPEC = ServerSpec(name="t", server_type="resources_servers", implementation="t", host="127.0.0.1", port=1)


def make_app():
    app = create_server_app(SPEC)
    calls: list[str] = []

    async def echo(request: Request) -> JSONResponse:
        calls.append("echo")
        return JSONResponse({"got": await read_json(request), "app": request.app is app})

    async def boom(request: Request) -> JSONResponse:
        raise RuntimeError("kaput")

    async def teapot(request: Request) -> JSONResponse:
        raise HTTPException(418, "short and stout")

    @app.post("/fastapi_route")
    async def fastapi_route() -> dict:
        calls.append("fastapi")
        return {"ok": True}

    app.add_route("/echo", echo, methods=["POST"])
    app.add_route("/boom", boom, methods=["POST"])
    app.add_route("/teapot", teapot, methods=["POST"])
    return app, calls


def run(coro):
    import asyncio

    return asyncio.run(coro)


def test_plain_routes_are_served_directly_and_others_fall_through_to_the_app():
    async def go():
        app, calls = make_app()
        direct = DirectRoutes(app)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(direct), base_url="http://t") as c:
            r = await c.post("/echo", content=b'{"a": 1}')
            assert r.status_code == 200 and r.json() == {"got": {"a": 1}, "app": True}
            assert (await c.post("/fastapi_route")).json() == {"ok": True}
            health = (await c.get("/health")).json()
            assert health == {"status": "ok", "name": "t", "type": "resources_servers"}
            assert (await c.get("/echo")).status_code == 405  # not a direct route: the app answers
        assert calls == ["echo", "fastapi"]

    run(go())


def test_direct_routes_turn_errors_into_json_answers():
    async def go():
        app, _ = make_app()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(DirectRoutes(app)), base_url="http://t") as c:
            bad = await c.post("/echo", content=b"{not json")
            assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
            teapot = await c.post("/teapot")
            assert teapot.status_code == 418 and teapot.json()["error"]["message"] == "short and stout"
            boom = await c.post("/boom")
            assert boom.status_code == 500 and "RuntimeError: kaput" in boom.json()["error"]["message"]

    run(go())
