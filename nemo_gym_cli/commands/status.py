"""``ng env status`` and ``ng eval aggregate``: NeMo Gym 0.7's commands about a run, here.

``ng env status`` (0.7's ``gym env status``): the servers of a running ``ng_run``.

Asks the head server (``+head_server.host``/``+head_server.port``, default 127.0.0.1:11000)
for its instance table and prints it: name, type, implementation, URL, pid, ready. Works
against NeMo Gym's head server too (its ``/server_instances``).

``ng eval aggregate -i <glob> -o <merged.jsonl>`` (0.7's ``gym eval aggregate``): shard
outputs merged, and 0.7's ``<stem>_aggregate_metrics.json`` beside them, with no server
(``collect/aggregate.py``).
"""

from __future__ import annotations

import httpx

from nemo_gym_cli.config import load_config
from nemo_gym_cli.errors import ConfigError, ServerError

__all__ = ["aggregate", "status"]

_COLUMNS = ("name", "type", "implementation", "url", "pid", "ready")


def _rows(head_url: str) -> list[dict[str, object]]:
    with httpx.Client(timeout=10.0, trust_env=False) as http:
        try:
            answer = http.get(head_url + "/instances")
            if answer.status_code == 404:  # NeMo Gym's head server
                return [
                    {
                        "name": row.get("config_path"),
                        "type": row.get("server_type"),
                        "implementation": row.get("name"),
                        "url": row.get("url"),
                        "pid": row.get("pid"),
                        "ready": row.get("status") in (None, "success"),
                    }
                    for row in http.get(head_url + "/server_instances").json()
                ]
            return list(answer.json()["instances"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise ServerError(
                f"no head server answers at {head_url} ({type(exc).__name__}): start the servers with "
                'ng_run "+config_paths=[...]", or give +head_server.port=<its port>',
                url=head_url,
            ) from None


def status(args: list[str]) -> int:
    """Print the instance table of the head server the overrides point at; 1 if one is not ready."""
    config = load_config(args, command=frozenset({"head_server", "config_paths"}))
    rows = _rows(config.head_url)
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in _COLUMNS}
    print("  ".join(c.upper().ljust(widths[c]) for c in _COLUMNS))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in _COLUMNS))
    print(f"{sum(bool(r.get('ready')) for r in rows)} of {len(rows)} servers ready; head server at {config.head_url}")
    return 0 if all(r.get("ready") for r in rows) else 1


def aggregate(args: list[str]) -> int:
    """Merge the shards ``+input_glob`` names into ``+output_jsonl_fpath`` and sum them up."""
    from pathlib import Path

    from nemo_gym_cli.collect.aggregate import merge_shards

    options = load_config(args, command=frozenset({"input_glob", "output_jsonl_fpath", "config_paths"})).options
    pattern, output = options.get("input_glob"), options.get("output_jsonl_fpath")
    if not isinstance(pattern, str) or not isinstance(output, str):
        raise ConfigError("ng eval aggregate needs -i <glob of rollout files> and -o <merged output .jsonl>")
    count, shards, path = merge_shards(pattern, Path(output))
    print(f"merged {count} rows of {len(shards)} files into {output}; NeMo Gym's aggregate metrics in {path}")
    return 0
