"""Run NeMo Gym 0.7's own directive code (``GlobalConfigDictParser._recursively_swap_keys``) on
each case of directive_cases.yaml and print what it gives, as JSON: the expected results of
test_directives.py. Run with 0.7's interpreter (not ours; nothing here imports nemo_gym_cli):

    ~/.cache/nemo-gym-cli/interop/nemo-gym07-py313/bin/python tests/nemo_gym/directive_oracle.py \\
        > tests/nemo_gym/directive_cases.expected.json
"""

import json
import sys
from pathlib import Path

import yaml
from nemo_gym.global_config import GlobalConfigDictParser
from nemo_gym.package_info import __version__
from omegaconf import OmegaConf


def main() -> None:
    cases = yaml.safe_load((Path(__file__).parent / "directive_cases.yaml").read_text())
    parser = GlobalConfigDictParser()
    out: dict = {"nemo_gym": __version__, "cases": {}}
    for name, config in cases.items():
        cfg = OmegaConf.create(config)
        try:
            parser._recursively_swap_keys(cfg)
        except Exception as exc:  # what 0.7 raises is the expectation
            out["cases"][name] = {"error": type(exc).__name__, "message": str(exc).splitlines()[0]}
            continue
        out["cases"][name] = {"config": OmegaConf.to_container(cfg, resolve=False)}
    json.dump(out, sys.stdout, indent=1, sort_keys=False)
    print()


if __name__ == "__main__":
    main()
