"""``ng_emulator``: run the provider emulator by itself on a local port."""

from __future__ import annotations

import argparse
import socket
import sys

from nemo_gym_cli.errors import NemoGymError
from nemo_gym_cli.server.spec import ServerSpec

from .config import FAULT_KINDS

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ng_emulator",
        description="A local OpenRouter-compatible server (no API key needed): scripted "
        "tool-calling answers, usage with cost, OpenRouter's errors, injectable faults. "
        "Serves /api/v1 and /v1 (chat/completions, responses, models, key), /health and "
        "/emulator/stats.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free port)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every completion")
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of completion requests (0..1) given a fault"
    )
    parser.add_argument(
        "--fault-kinds",
        default="429,500,502,503",
        help=f"comma-separated faults --fault-rate draws from; any of {','.join(FAULT_KINDS)}",
    )
    parser.add_argument("--fault-seed", type=int, default=0, help="seed of the fault draws (same seed, same faults)")
    parser.add_argument("--retry-after-seconds", type=float, default=1.0, help="Retry-After header of injected 429s")
    parser.add_argument(
        "--stall-seconds", type=float, default=3600.0, help="how long a 'stall' fault waits before answering"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """``ng_emulator``: bind the port, say where, serve until Ctrl-C."""
    from nemo_gym_cli.server.serve import serve_server

    from .app import ProviderEmulator

    args = _parser().parse_args(argv)
    fields = {
        "latency_ms": args.latency_ms,
        "fault_rate": args.fault_rate,
        "fault_kinds": args.fault_kinds,
        "fault_seed": args.fault_seed,
        "retry_after_seconds": args.retry_after_seconds,
        "stall_seconds": args.stall_seconds,
    }
    spec = ServerSpec(name="ng_emulator", server_type="responses_api_models", implementation="provider_emulator")
    try:
        server = ProviderEmulator.from_fields(fields, spec)
    except NemoGymError as exc:
        print(f"ng_emulator: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
        sock.listen(4096)
    except OSError as exc:
        print(
            f"ng_emulator: error: cannot listen on {args.host}:{args.port} ({exc.strerror}); "
            "choose another --port (0 picks a free one)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    port = sock.getsockname()[1]
    print(
        f"ng_emulator: OpenRouter-compatible API at http://{args.host}:{port}/api/v1 "
        f"(models: {', '.join(server.by_id)})",
        file=sys.stderr,
        flush=True,
    )
    raise SystemExit(serve_server(server, sock.detach()))


if __name__ == "__main__":
    main()
