"""The base of every server: typed config, declared routes, lifecycle, ``asgi(server)``.

    class MyServer(Server):                     # or ResourcesServer / Agent / ModelServer
        class Config(ServerConfig):
            greeting: str = Field("hi", description="what /hello answers")

        @route("GET", "/hello")
        async def hello(self, request: Request) -> dict:
            return {"message": self.config.greeting}

    app = asgi(MyServer.from_fields({"greeting": "hello"}))   # what uvicorn serves

``asgi(server)`` is the one ASGI app of a server: production serves it, tests drive it
(``starlette.testclient.TestClient(asgi(server))``), so tests run what production runs.
Clients a server needs (to other servers, to a provider) open in ``start`` and are closed
after ``stop``: register them with ``await self.enter(context_manager)``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, ClassVar, TypeVar

from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.server.config import ServerConfig, ServerRef, validate_model
from nemo_gym_cli.server.http import Handler, Request, Router, RouteSpec, route
from nemo_gym_cli.server.replicas import Replicas
from nemo_gym_cli.server.spec import ServerSpec

__all__ = ["Server", "asgi"]

S = TypeVar("S", bound="Server")
T = TypeVar("T")


class Server:
    """A server instance: its validated ``config``, its ``spec`` (name, URLs of the others)."""

    #: The config model of this server class; fields are the instance's YAML keys.
    Config: ClassVar[type[ServerConfig]] = ServerConfig
    #: The NeMo Gym server type this class serves as (set by the kind's base class).
    server_type: ClassVar[str] = ""

    def __init__(self, config: ServerConfig | None = None, spec: ServerSpec | None = None) -> None:
        self.config: Any = config if config is not None else validate_model(self.Config, {}, type(self).__name__)
        self.spec = spec or ServerSpec(
            name=type(self).__name__, server_type=self.server_type, implementation=type(self).__module__
        )
        self._exit = AsyncExitStack()
        self._router: Router | None = None

    @classmethod
    def from_fields(cls: type[S], fields: dict[str, Any], spec: ServerSpec | None = None) -> S:
        """Validate ``fields`` (an instance's config keys) into ``Config`` and build the server.
        Unknown keys and wrong types raise one ``ConfigError`` line."""
        where = spec.where if spec is not None else cls.__name__
        config = validate_model(cls.Config, fields, where, spec.sources if spec is not None else None)
        return cls(config, spec)

    @classmethod
    def from_spec(cls: type[S], spec: ServerSpec) -> S:
        return cls.from_fields(spec.fields, spec)

    # ------------------------------------------------------------------ routes

    def routes(self) -> list[tuple[RouteSpec, Handler]]:
        """Every ``@route`` of this class and its bases, bound to this server. A method that
        overrides a route method keeps the base's route (and may add its own)."""
        specs: dict[str, list[RouteSpec]] = {}
        for klass in reversed(type(self).__mro__):
            for name, member in vars(klass).items():
                for spec in getattr(member, "__ng_routes__", ()):
                    if spec not in specs.setdefault(name, []):
                        specs[name].append(spec)
        return [(spec, getattr(self, name)) for name, found in specs.items() for spec in found]

    def middleware(self) -> list[Callable[[Any], Any]]:
        """ASGI middleware wrapped around every route, outermost first. Default: none."""
        return []

    @route("GET", "/health")
    @route("GET", "/healthz")
    @route("GET", "/livez")
    @route("GET", "/readyz")
    async def health(self, request: Request) -> dict[str, Any]:
        """Liveness and readiness (NeMo Gym 0.7's probes too): a server answers once it has
        started, so being up is being ready."""
        return {"status": "ok", "name": self.spec.name, "type": self.spec.server_type}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open what the server needs (clients, pools). Called once before serving."""

    async def stop(self) -> None:
        """Release what ``start`` opened that ``enter`` does not close. Called once."""

    async def enter(self, context: AbstractAsyncContextManager[T]) -> T:
        """Enter ``context`` now and exit it when the server shuts down."""
        return await self._exit.enter_async_context(context)

    async def startup(self) -> None:
        try:
            await self.start()
        except BaseException:
            await self._exit.aclose()  # close what start() had opened before it failed
            raise

    async def shutdown(self) -> None:
        try:
            await self.stop()
        finally:
            await self._exit.aclose()

    # ------------------------------------------------------------------ helpers

    def describe(self) -> str:
        return f"{self.spec.name} ({self.spec.server_type or type(self).__name__})"

    def url_for(self, ref: ServerRef, where: str = "server reference") -> str:
        """Base URL of the instance ``ref`` names (its first replica's)."""
        try:
            return self.spec.server_urls[ref.name]
        except KeyError:
            known = ", ".join(sorted(self.spec.server_urls)) or "none"
            raise ConfigError(
                f"{self.spec.where}.{where} names instance {ref.name!r}, which does not exist (instances: {known})"
            ) from None

    def replicas_for(self, ref: ServerRef, where: str = "server reference") -> Replicas:
        """Every replica of the instance ``ref`` names (one, unless it runs on a Ray cluster)."""
        first = self.url_for(ref, where)
        return Replicas(ref.name, self.spec.replica_urls.get(ref.name) or [first])


def asgi(server: Server) -> Router:
    """The ASGI app of ``server`` (built once): what production serves and tests drive."""
    if server._router is None:
        server._router = Router(server)
    return server._router
