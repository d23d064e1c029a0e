"""`omnirecon-sandbox`: serve the four imitation APIs for a scenario on 127.0.0.1."""
from __future__ import annotations

import argparse
import sys

from omnirecon_contract import ConfigError
from omnirecon_contract.scenario import load


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="omnirecon-sandbox",
                                description="Local imitations of Shopify, Amazon SP-API, Walmart and NetSuite.")
    p.add_argument("--scenario", required=True, help="scenario file (shared/contracts/scenario.md)")
    p.add_argument("--time-scale", type=float, default=1.0, help="0.01 = rate limits and delays 100x faster")
    p.add_argument("--endpoints", default=None, help="write URLs and connection fields to this JSON file")
    p.add_argument("--state-out", default=None, help="write the final state (sandbox_state.json) here on exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from omnirecon_sandbox.core import serve
    try:
        load(args.scenario)   # fail fast with the path of a bad field
        serve(args.scenario, time_scale=args.time_scale, endpoints_file=args.endpoints, state_file=args.state_out)
    except ConfigError as e:
        print(f"omnirecon-sandbox: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
