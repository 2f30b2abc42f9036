"""``python -m gateway.procfile --config FILE``: the Procfile for a config.

One entry for the gateway and one supervised entry per model. The committed
Procfile is this output for the default config (a test keeps them equal).
"""

from __future__ import annotations

import argparse
import re

from protocol.config import Config, load_config


def procfile(config: Config) -> str:
    lines = ["gateway: python -m gateway"]
    for model in config.models:
        entry = re.sub(r"[^A-Za-z0-9_-]", "-", model.name)
        lines.append(f"{entry}: python -m workers.supervisor --model {model.name}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=None)
    print(procfile(load_config(parser.parse_args().config)), end="")


if __name__ == "__main__":
    main()
