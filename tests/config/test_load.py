"""The jishi.yaml loader: what a valid file becomes, and how each kind of mistake is reported."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from jishi.config import ConfigErrors, Overrides, load_config, parse_config, parse_duration
from jishi.errors import ConfigError

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop" / "jishi.yaml"


def parse(text: str, tmp_path: Path, overrides: Overrides | None = None):
    return parse_config(textwrap.dedent(text), "jishi.yaml", tmp_path, overrides, python="/py")


def error(text: str, tmp_path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(text, tmp_path)
    return caught.value


def test_shop_example_is_valid_and_declares_three_services():
    """The demo's jishi.yaml loads: 3 catalog, 2 orders, 2 users, one stripped route each."""
    config = load_config(SHOP)
    counts = {name: spec.instances for name, spec in config.services.items()}
    assert counts == {"catalog": 3, "orders": 2, "users": 2}
    assert {(r.prefix, r.strip_prefix, r.backends[0].service) for r in config.routes} == {
        ("/api/catalog", True, "catalog"),
        ("/api/orders", True, "orders"),
        ("/api/users", True, "users"),
    }
    assert config.gateway_url == "http://127.0.0.1:8080"
    assert config.control_plane_url == "http://127.0.0.1:8500"
    assert config.data_dir == SHOP.parent / ".jishi"
    assert config.warnings == []


def test_conveniences_become_registry_specs(tmp_path):
    """Command strings split like a shell, durations parse, env values stringify, placeholders fill in."""
    config = parse(
        """
        gateway: {listen: "127.0.0.1:9090"}
        services:
          api:
            command: "{python} app.py --port {port} --name 'a b'"
            env: {N: 3, DEBUG: true, UP: "{gateway}/x", DB: "{data_dir}/api.db"}
            cwd: svc
            drain_seconds: 250ms
            health_check: {interval: 2s, deregister_critical_after: 1m}
            restart: {max_delay: 1h}
        routes:
          - {name: api, prefix: /api, service: api, read_timeout: 1.5}
        """,
        tmp_path,
    )
    services, routes = config.to_specs()
    (spec,) = services
    assert spec.command == ["/py", "app.py", "--port", "{port}", "--name", "a b"]
    assert spec.env == {"N": "3", "DEBUG": "true", "UP": "http://127.0.0.1:9090/x", "DB": f"{tmp_path}/.jishi/api.db"}
    assert spec.cwd == str(tmp_path / "svc")
    assert spec.drain_seconds == 0.25
    assert (spec.health_check.interval, spec.health_check.deregister_critical_after) == (2.0, 60.0)
    assert spec.restart.max_delay == 3600.0
    assert routes[0].backends[0].service == "api" and routes[0].read_timeout == 1.5


def test_cwd_defaults_to_the_files_folder(tmp_path):
    """A service without `cwd` runs in the folder of the jishi.yaml that declares it."""
    config = parse("services: {a: {command: [x, '{port}']}}", tmp_path)
    assert config.services["a"].cwd == str(tmp_path)


def test_routes_as_mapping_take_their_names_from_keys(tmp_path):
    """`routes:` may be a mapping; each key is the route's name."""
    config = parse(
        """
        services: {a: {command: "x {port}"}, b: {command: "y {port}"}}
        routes:
          first: {prefix: /a, service: a}
          second: {prefix: /b, backends: [{service: a}, {service: b, weight: 3, backup: true}]}
        """,
        tmp_path,
    )
    assert [r.name for r in config.routes] == ["first", "second"]
    assert config.routes[1].backends[1].weight == 3 and config.routes[1].backends[1].backup


def test_overrides_win_over_the_file(tmp_path):
    """--server-listen/--gateway-listen/--data-dir replace the file's values, and `{gateway}` follows them."""
    config = parse(
        """
        server: {listen: "127.0.0.1:8500"}
        gateway: {listen: "127.0.0.1:8080"}
        services: {a: {command: "x {port}", env: {G: "{gateway}"}}}
        """,
        tmp_path,
        Overrides(server_listen="127.0.0.1:1111", gateway_listen="127.0.0.1:2222", data_dir="/tmp/elsewhere"),
    )
    assert config.control_plane_url == "http://127.0.0.1:1111"
    assert config.services["a"].env["G"] == "http://127.0.0.1:2222"
    assert config.data_dir == Path("/tmp/elsewhere")


def test_range_error_names_line_field_and_fix(tmp_path):
    """A negative instance count names the line, the dotted field, the value and a fix."""
    exc = error(
        """
        services:
          catalog:
            command: "x {port}"
            instances: -1
        """,
        tmp_path,
    )
    assert (exc.file, exc.line, exc.field) == ("jishi.yaml", 5, "services.catalog.instances")
    assert "must be ≥ 0, got -1" in str(exc)
    assert "fix: set a count like `instances: 3`" in str(exc)
    assert str(exc).startswith("jishi.yaml:5: services.catalog.instances: ")


def test_unknown_key_suggests_the_closest_field(tmp_path):
    """A misspelt field gets "did you mean" with the right name, at its own line."""
    exc = error(
        """
        services:
          catalog:
            command: "x {port}"
            health_check:
              intervl: 1s
        """,
        tmp_path,
    )
    assert (exc.line, exc.field) == (6, "services.catalog.health_check.intervl")
    assert exc.fix == "did you mean `interval`?"


def test_unknown_top_level_section_suggests_the_closest(tmp_path):
    """A misspelt top-level section is caught too."""
    exc = error("servics: {}\n", tmp_path)
    assert (exc.line, exc.field, exc.fix) == (1, "servics", "did you mean `services`?")


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    """Broken YAML is reported with its line and column, not a traceback."""
    exc = error("services:\n  a:\n    command: [x\n  b: 1\n", tmp_path)
    assert exc.line is not None and exc.line >= 3
    assert "YAML syntax error (column" in str(exc)


def test_duplicate_key_is_an_error(tmp_path):
    """The same key twice in one mapping names both lines."""
    exc = error("services:\n  a: {command: x}\n  a: {command: y}\n", tmp_path)
    assert (exc.line, exc.field) == (3, "services.a")
    assert "first written on line 2" in str(exc)


def test_bad_duration_names_its_field(tmp_path):
    """A duration that is not one says which forms are accepted."""
    exc = error("services:\n  a:\n    command: x\n    stop_timeout: 10 years\n", tmp_path)
    assert (exc.line, exc.field) == (4, "services.a.stop_timeout")
    assert '"500ms"' in (exc.fix or "")


def test_route_naming_unknown_service_points_at_the_service_line(tmp_path):
    """`service: catalg` on a route is reported at that line, with the likely intended name."""
    exc = error(
        """
        services:
          catalog: {command: "x {port}"}
        routes:
          shop:
            prefix: /api
            service: catalg
        """,
        tmp_path,
    )
    assert (exc.line, exc.field) == (7, "routes.shop.service")
    assert "unknown service 'catalg'" in str(exc) and exc.fix == "did you mean `catalog`?"


def test_duplicate_route_names_are_rejected(tmp_path):
    """Two routes with one name: the second is reported."""
    exc = error(
        """
        services: {a: {command: "x {port}"}}
        routes:
          - {name: r, prefix: /a, service: a}
          - {name: r, prefix: /b, service: a}
        """,
        tmp_path,
    )
    assert (exc.line, exc.field) == (5, "routes[1].name")
    assert "used twice" in str(exc)


def test_service_and_backends_together_are_rejected(tmp_path):
    """A route gives either `service` or `backends`."""
    exc = error(
        """
        services: {a: {command: "x {port}"}}
        routes:
          - {name: r, prefix: /a, service: a, backends: [{service: a}]}
        """,
        tmp_path,
    )
    assert exc.field == "routes[0].service" and "not both" in str(exc)


def test_invalid_service_name_is_reported_at_its_key(tmp_path):
    """A service name with capitals or spaces is reported once, at its key."""
    exc = error("services:\n  Bad Name: {command: x}\n", tmp_path)
    assert (exc.line, exc.field) == (2, "services.Bad Name")
    assert "not a valid name" in str(exc)


def test_several_problems_are_all_reported_in_line_order(tmp_path):
    """One run reports every problem, sorted by line."""
    exc = error(
        """
        gateway: {listen: nowhere}
        services:
          a: {command: "x {port}", weigth: 2}
        """,
        tmp_path,
    )
    assert isinstance(exc, ConfigErrors)
    assert [(p.line, p.field) for p in exc.problems] == [(2, "gateway.listen"), (4, "services.a.weigth")]
    assert "HOST:PORT" in str(exc)


def test_missing_command_is_required(tmp_path):
    """A service without a command says the field is required."""
    exc = error("services:\n  a:\n    instances: 2\n", tmp_path)
    assert exc.field == "services.a.command" and "is required" in str(exc)


def test_unsplittable_command_string(tmp_path):
    """An unclosed quote in a command string is an error with a fix."""
    exc = error('services:\n  a:\n    command: "x \'y"\n', tmp_path)
    assert exc.field == "services.a.command" and "cannot be split" in str(exc)


def test_health_check_without_port_placeholder_warns(tmp_path):
    """An http-checked service whose command and env never mention {port} gets a warning, not an error."""
    config = parse("services:\n  a: {command: x}\n", tmp_path)
    assert len(config.warnings) == 1 and "{port}" in config.warnings[0]
    quiet = parse("services:\n  a: {command: x, health_check: {type: none}}\n", tmp_path)
    assert quiet.warnings == []


def test_missing_file_is_a_config_error(tmp_path):
    """A path that does not exist is reported as such, with the fix."""
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(3, 3.0), (0.5, 0.5), ("500ms", 0.5), ("2s", 2.0), ("1.5m", 90.0), ("1h", 3600.0), (" 7 ", 7.0)],
)
def test_parse_duration(text, seconds):
    """Durations: numbers are seconds; ms, s, m and h suffixes scale."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1d", "ms", True, None, "-1s"])
def test_parse_duration_rejects(text):
    """Anything else is a ValueError."""
    with pytest.raises(ValueError):
        parse_duration(text)


def test_an_empty_file_is_refused_naming_the_file_and_a_fix(tmp_path: Path) -> None:
    """An empty jishi.yaml is an error (applying it would delete everything), not an empty project."""
    path = tmp_path / "jishi.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == 1
    assert "empty" in str(info.value) and "services:" in str(info.value)


def test_no_services_on_purpose_is_allowed_with_a_warning(tmp_path: Path) -> None:
    """`services: {}` loads, and warns that every running instance will be stopped."""
    path = tmp_path / "jishi.yaml"
    path.write_text("services: {}\n")
    config = load_config(path)
    assert config.services == {}
    assert any("no services" in w for w in config.warnings)


def test_gateway_url_is_https_when_the_gateway_terminates_tls(tmp_path: Path) -> None:
    """With gateway.tls set, the URL jishi prints and hands out for the gateway is https://."""
    path = tmp_path / "jishi.yaml"
    path.write_text("gateway:\n  listen: 127.0.0.1:8443\n  tls: {cert: c.pem, key: k.pem}\nservices: {}\n")
    config = load_config(path)
    assert config.gateway_url == "https://127.0.0.1:8443"
    assert config.gateway.tls is not None and config.gateway.tls.cert == str(tmp_path / "c.pem")


def test_keys_written_on_off_yes_no_stay_names(tmp_path: Path) -> None:
    """A key written `on:` (as in `retry.on` and `fallback.on`) is the name "on", not YAML 1.1's boolean."""
    path = tmp_path / "jishi.yaml"
    path.write_text(
        "services:\n  a: {command: sleep 100}\n"
        "routes:\n  a:\n    prefix: /a\n    service: a\n"
        "    retry:\n      on: [connect_failure, 503]\n"
        "    fallback:\n      on: [breaker_open]\n      body: '{}'\n"
    )
    config = load_config(path)
    route = config.routes[0]
    assert route.retry is not None and route.retry.on == ["connect_failure", "503"]
    assert route.fallback is not None and route.fallback.on == ["breaker_open"]


def test_service_policies_are_defaults_for_its_routes(tmp_path: Path) -> None:
    """`services.<n>.policies` reach every route to that service; a route's own section wins; a route over two
    services takes none; the access log path is made absolute against the file's folder."""
    path = tmp_path / "jishi.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            services:
              a:
                command: sleep 100
                policies:
                  breaker: {failure_rate: 25, minimum_calls: 10}
                  rate_limit: {requests: 100, period: 1s}
              b: {command: sleep 100}
            routes:
              plain: {prefix: /a, service: a}
              own:
                prefix: /own
                service: a
                breaker: {failure_rate: 75}
                access_log: {path: logs/own.jsonl}
              mixed:
                prefix: /m
                backends: [{service: a}, {service: b}]
            """
        )
    )
    routes = {r.name: r for r in load_config(path).routes}
    assert routes["plain"].breaker is not None and routes["plain"].breaker.failure_rate == 25
    assert routes["plain"].rate_limit is not None and routes["plain"].rate_limit.requests == 100
    assert routes["own"].breaker is not None and routes["own"].breaker.failure_rate == 75
    assert routes["own"].rate_limit is not None  # what the route does not set still comes from the service
    assert routes["own"].access_log is not None and routes["own"].access_log.path == str(tmp_path / "logs/own.jsonl")
    assert routes["mixed"].breaker is None and routes["mixed"].rate_limit is None


def test_service_policy_errors_name_the_services_line(tmp_path: Path) -> None:
    """A bad value in a service's policies is reported at the service's line; a route-only section is refused."""
    path = tmp_path / "jishi.yaml"
    path.write_text(
        "services:\n  a:\n    command: sleep 100\n    policies:\n      breaker: {failure_rate: 500}\n"
        "      rewrite: {path: /x}\n"
        "routes:\n  r: {prefix: /a, service: a}\n"
    )
    with pytest.raises(ConfigErrors) as caught:
        load_config(path)
    text = str(caught.value)
    assert f"{path}:5: services.a.policies.breaker.failure_rate" in text, text
    assert f"{path}:6: services.a.policies.rewrite" in text and "belongs to a route" in text, text
