"""Generate simple_weather tasks: ``python resources_servers/simple_weather/generate_tasks.py -n 10000``.

Writes ``data/generated_<n>.jsonl`` beside this file (git-ignored) unless ``--out`` is given.
Rows are deterministic for a given ``--seed``.
"""

from __future__ import annotations

import random
from pathlib import Path

from nemo_gym_cli.tasks import write_tasks_command

CITIES = [
    ("San Francisco", ["sf", "San Francisco", "san fran"]),
    ("New York", ["nyc", "New York", "new york city"]),
    ("Los Angeles", ["la", "Los Angeles"]),
    ("London", ["London"]),
    ("Paris", ["Paris"]),
    ("Tokyo", ["Tokyo"]),
    ("Berlin", ["Berlin"]),
    ("Sydney", ["Sydney"]),
    ("Chicago", ["Chicago"]),
    ("Seattle", ["Seattle"]),
    ("Madrid", ["Madrid"]),
    ("Rome", ["Rome"]),
    ("Toronto", ["Toronto"]),
    ("Boston", ["Boston"]),
]
TEMPLATES = [
    "what's it like in {}?",
    "What is the weather in {} today?",
    "Do I need an umbrella in {}?",
    "how warm is it in {} right now?",
    "Should I pack a jacket for {}?",
    "Is it sunny in {}?",
]
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city name."}},
        "required": ["city"],
    },
    "strict": False,  # NeMo Gym's agents require the key (FunctionToolParam)
}


def generate(n: int, seed: int = 0):
    rng = random.Random(seed)
    for _ in range(n):
        city, aliases = rng.choice(CITIES)
        text = rng.choice(TEMPLATES).format(rng.choice(aliases))
        yield {
            "responses_create_params": {
                "input": [{"role": "user", "content": text}],
                "tools": [TOOL],
            },
            "expected_city": city,
        }


def main() -> None:
    write_tasks_command(generate, __doc__, Path(__file__).parent, count=10_000, compact=True)


if __name__ == "__main__":
    main()
