"""Run a benchmark on each stack, starting the scaled-out servers itself.

    python -m bench.stacks [--stack default,cluster,rabbitmq,cluster-rabbitmq] [--bench throughput]
                           [-- <the benchmark's own arguments>]

- default: the gate on REDIS_URL, the broker on CELERY_BROKER_URL (bench's
  defaults when unset), as the benchmark run alone would;
- cluster: the gate on a fresh 3-primary Redis Cluster, the broker as above;
- rabbitmq: the broker on a fresh vhost of the RabbitMQ answering on
  127.0.0.1:5672, the gate as above;
- cluster-rabbitmq: both.

The cluster and the vhost are started once, on free loopback ports, the way
the tests start them (tests/local_servers.py), and removed at the end. Each
stack is a `python -m bench.<bench>` run of its own, its environment
pointing at that stack's servers, its output (one table) under a heading
naming the stack. For example:

    python -m bench.stacks --stack cluster,rabbitmq -- --count 3000 --rows teams,gate,gate-1,admission
    python -m bench.stacks --stack default,cluster --bench scale -- --parts admission
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from bench.common import DEFAULTS, ROOT


@dataclass(frozen=True)
class Stack:
    name: str
    cluster: bool = False
    rabbitmq: bool = False


STACKS = {
    stack.name: stack
    for stack in (
        Stack("default"),
        Stack("cluster", cluster=True),
        Stack("rabbitmq", rabbitmq=True),
        Stack("cluster-rabbitmq", cluster=True, rabbitmq=True),
    )
}
# The benchmarks that read their servers from the environment alone.
BENCHES = ("throughput", "scale")


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """This launcher's arguments, and the benchmark's (after ``--``)."""
    if "--" not in argv:
        return argv, []
    at = argv.index("--")
    return argv[:at], argv[at + 1 :]


def stack_env(
    stack: Stack, base: Mapping[str, str], *, cluster_url: str | None, amqp_url: str | None
) -> dict[str, str]:
    """The environment of one stack's run: ``base`` with REDIS_URL and
    CELERY_BROKER_URL always set (a cluster gate refuses to start without
    an explicit broker URL), pointing at the stack's servers."""
    env = dict(base)
    for name in ("REDIS_URL", "CELERY_BROKER_URL"):
        env.setdefault(name, DEFAULTS[name])
    if stack.cluster:
        if cluster_url is None:
            raise ValueError(f"stack {stack.name} needs a cluster URL")
        env["REDIS_URL"] = cluster_url
    if stack.rabbitmq:
        if amqp_url is None:
            raise ValueError(f"stack {stack.name} needs an AMQP URL")
        env["CELERY_BROKER_URL"] = amqp_url
    # The child's output interleaves with the headings printed here.
    env["PYTHONUNBUFFERED"] = "1"
    return env


def parse_stacks(value: str) -> list[Stack]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(STACKS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown stacks: {', '.join(unknown) or '(none given)'}; choose from {', '.join(STACKS)}"
        )
    return [STACKS[name] for name in names]


def main() -> None:
    from tests import local_servers

    own, passed = split_argv(sys.argv[1:])
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Arguments after -- go to the benchmark, the same for every stack.",
    )
    parser.add_argument(
        "--stack",
        type=parse_stacks,
        default=list(STACKS.values()),
        help=f"comma-separated, any of: {', '.join(STACKS)} (default: all)",
    )
    parser.add_argument("--bench", choices=BENCHES, default="throughput", help="default: throughput")
    args = parser.parse_args(own)
    stacks: list[Stack] = args.stack

    failed: list[str] = []
    with contextlib.ExitStack() as servers:
        cluster_url = amqp_url = None
        try:
            if any(stack.cluster for stack in stacks):
                cluster_url = servers.enter_context(local_servers.redis_cluster()).url
            if any(stack.rabbitmq for stack in stacks):
                amqp_url = servers.enter_context(local_servers.rabbitmq_vhost("attune-bench"))
        except (local_servers.Unavailable, local_servers.StartFailed) as error:
            parser.exit(2, f"cannot start the servers: {error}\n")
        for stack in stacks:
            env = stack_env(stack, os.environ, cluster_url=cluster_url, amqp_url=amqp_url)
            print(f"\n# Stack: {stack.name}\n", flush=True)
            command = [sys.executable, "-m", f"bench.{args.bench}", *passed]
            if subprocess.run(command, cwd=ROOT, env=env, check=False).returncode != 0:
                failed.append(stack.name)
    if failed:
        sys.exit(f"the benchmark failed on: {', '.join(failed)}")


if __name__ == "__main__":
    main()
