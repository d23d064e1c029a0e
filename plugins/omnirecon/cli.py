"""The `omnirecon` command."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from omnirecon import __version__
from omnirecon.errors import ConfigError, OmniReconError

EXIT_OUTAGE = 3
EXIT_CONFIG = 2


def _default_scenario() -> str:
    from omnirecon.config import project_home
    return str(project_home() / "include" / "scenarios" / "demo.yaml")


def cmd_version(args) -> int:
    print(f"omnirecon {__version__}")
    return 0


def cmd_validate(args) -> int:
    from omnirecon_contract import scenario
    from omnirecon.config import load_settings
    for path in args.files:
        if Path(path).name in ("retailer.yaml",) or args.settings:
            load_settings(path)
        else:
            scenario.load(path)
        print(f"{path}: valid")
    return 0


def cmd_airflow_init(args) -> int:
    from omnirecon import airflow_setup
    airflow_setup.init(quiet=args.quiet)
    print(f"Airflow home ready: {airflow_setup.airflow_home()}")
    return 0


def cmd_sandbox(args) -> int:
    """The sandbox is its own package (`omnirecon-sandbox`); this runs its entry point in the foreground."""
    import subprocess
    from omnirecon_contract.scenario import load
    from omnirecon.sandbox_process import sandbox_command
    load(args.scenario)  # fail fast with the path of a bad field
    cmd = [*sandbox_command(), "--scenario", args.scenario, "--time-scale", str(args.time_scale)]
    if args.endpoints:
        cmd += ["--endpoints", args.endpoints]
    return subprocess.call(cmd)


def cmd_demo(args) -> int:
    if args.live:
        if args.approve_all:
            raise ConfigError("--approve-all does not apply to --live: corrections above the approval threshold wait "
                              "for a person (unpause omnirecon_approvals in the Airflow UI to decide them)")
        from omnirecon.config import project_home
        from omnirecon.live_demo import run_live_demo
        return run_live_demo(duration=args.live, out_dir=args.out, mode=args.mode, port=args.port,
                             scenario_path=args.scenario or str(project_home() / "include" / "scenarios" / "world.yaml"))
    from omnirecon.demo import run_demo
    return run_demo(scenario_path=args.scenario or _default_scenario(), out_dir=args.out, mode=args.mode,
                    approve_all=args.approve_all, time_scale=args.time_scale)


def cmd_up(args) -> int:
    from omnirecon.demo import run_up
    return run_up(scenario_path=args.scenario or _default_scenario(), port=args.port)


def cmd_receiver(args) -> int:
    from omnirecon.live.receiver import serve
    return serve(host=args.host, port=args.port)


def cmd_sqs_consumer(args) -> int:
    if not args.queue_url.strip():
        print("omnirecon sqs-consumer: --queue-url is empty (set OMNIRECON_SQS_QUEUE_URL)", file=sys.stderr)
        return 2
    from omnirecon.live.sqs import serve
    return serve(args.queue_url)


def cmd_subscribe(args) -> int:
    from omnirecon.live.subscriptions import ensure_all
    for system, topic, sub_id, action in ensure_all(args.receiver_url, args.sqs_queue_arn):
        print(f"{system:8} {topic:36} {action:9} {sub_id}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="omnirecon", description="Reconcile inventory and orders across Shopify, Amazon, Walmart and NetSuite.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("version", help="print the version")
    s.set_defaults(func=cmd_version)

    s = sub.add_parser("validate", help="validate scenario or settings files (errors name the bad field)")
    s.add_argument("files", nargs="+")
    s.add_argument("--settings", action="store_true", help="treat the files as retailer settings")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("airflow-init", help="prepare the project's Airflow home (.airflow/)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_airflow_init)

    s = sub.add_parser("sandbox", help="serve the four imitation APIs for a scenario on 127.0.0.1")
    s.add_argument("--scenario", default=None, help="scenario file (default: the bundled demo)")
    s.add_argument("--time-scale", type=float, default=1.0, help="0.01 = rate limits and delays 100x faster")
    s.add_argument("--endpoints", default=None, help="write URLs and connection fields to this JSON file")
    s.set_defaults(func=cmd_sandbox)

    s = sub.add_parser("demo", help="run the whole pipeline once through Airflow against the sandbox")
    s.add_argument("--scenario", default=None, help="scenario file (default: include/scenarios/demo.yaml)")
    s.add_argument("--out", default="demo-out", help="output directory (default ./demo-out)")
    s.add_argument("--mode", choices=["apply", "dry-run"], default="apply")
    s.add_argument("--approve-all", action="store_true", help="approve corrections above the approval threshold")
    s.add_argument("--time-scale", type=float, default=0.01, help=argparse.SUPPRESS)
    s.add_argument("--live", metavar="DURATION", default=None,
                   help="run the living world in real time for DURATION (90s, 5m) with omnirecon fully live: "
                        "subscriptions, receiver, Airflow scheduler and triggerer (default scenario: "
                        "include/scenarios/world.yaml)")
    s.add_argument("--port", type=int, default=None, help="with --live: the Airflow UI's port (default: a free one)")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("receiver", help="the HTTP endpoint platforms deliver change notifications to")
    s.add_argument("--host", default="0.0.0.0")
    s.add_argument("--port", type=int, default=8099)
    s.set_defaults(func=cmd_receiver)

    s = sub.add_parser("subscribe", help="create or re-create the platforms' change-notification subscriptions")
    s.add_argument("--receiver-url", required=True, help="public base URL of `omnirecon receiver`")
    s.add_argument("--sqs-queue-arn", default=None, help="ARN of the SQS queue Amazon delivers its notifications to (SP-API destination + subscriptions)")
    s.set_defaults(func=cmd_subscribe)

    s = sub.add_parser("sqs-consumer", help="move Amazon's notifications from their SQS queue into the ledger inbox")
    s.add_argument("--queue-url", required=True, help="the SQS queue's URL")
    s.set_defaults(func=cmd_sqs_consumer)

    s = sub.add_parser("up", help="Airflow UI (airflow standalone) with the project's DAGs and the sandbox")
    s.add_argument("--scenario", default=None)
    s.add_argument("--port", type=int, default=8080)
    s.set_defaults(func=cmd_up)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "sandbox" and not args.scenario:
        args.scenario = _default_scenario()
    try:
        return args.func(args)
    except (OmniReconError, ConfigError) as e:
        print(f"omnirecon: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
