"""FORWARDER_ROUTES_FILE: several apps into several projects; each problem of the file is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from forwarder.core.counting import DEFAULT_ROUTE
from forwarder.routes import RouteTable, load_routes
from forwarder.settings import SettingsError, WorkerSettings, settings_from

BASE = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "AMPLITUDE_API_KEY": "env-key"}
KEYS = {"EU_KEY": "eu-secret-key", "US_KEY": "us-secret-key"}
GOOD = """
[routes.eu]
app_names = ["Shop EU"]
amplitude_api_key_env = "EU_KEY"
residency = "eu"
events = "EMAIL"
pii = "moe_email_id:drop"

[routes.us]
app_names = ["Shop US", "Shop US staging"]
amplitude_api_key_env = "US_KEY"
api = "batch"
min_id_length = 3

[routes.rest]
default = true
"""


def routes_from(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> RouteTable:
    path = tmp_path / "routes.toml"
    path.write_text(text)
    env = {**BASE, **KEYS, "FORWARDER_ROUTES_FILE": str(path), **(environ or {})}
    return load_routes(settings_from(env, WorkerSettings), env)


def test_without_a_file_there_is_one_default_route_from_the_environment() -> None:
    table = load_routes(settings_from(BASE, WorkerSettings), BASE)
    assert [route.name for route in table.routes] == [DEFAULT_ROUTE]
    assert table.pick(None, "any app").name == DEFAULT_ROUTE  # type: ignore[union-attr]
    assert not table.from_file


def test_each_route_has_its_projects_settings_and_the_rest_from_the_environment(tmp_path: Path) -> None:
    table = routes_from(tmp_path, GOOD)
    eu, us, rest = (table.named(name) for name in ("eu", "us", "rest"))
    assert eu is not None
    assert us is not None
    assert rest is not None
    assert eu.amplitude.api_key is not None
    assert eu.amplitude.api_key.get_secret_value() == "eu-secret-key"
    assert eu.amplitude.endpoint() == "https://api.eu.amplitude.com/2/httpapi"
    assert us.amplitude.endpoint() == "https://api2.amplitude.com/batch"
    assert us.rules.min_id_length == 3
    assert rest.amplitude.api_key is not None
    assert rest.amplitude.api_key.get_secret_value() == "env-key"
    assert eu.rules.selection.resolve("SMS_SENT", eu.rules.catalogue) is None  # EMAIL only
    assert eu.rules.pii is not None
    assert rest.rules.pii is None
    assert table.pick(None, "Shop US staging") is us
    assert table.pick(None, "Shop Mars") is rest  # no route takes it: the default
    assert table.pick("eu", "Shop US") is eu  # the header ingest wrote wins
    assert table.pick("nope", "Shop US") is None


def test_without_a_default_an_unknown_app_has_no_route(tmp_path: Path) -> None:
    table = routes_from(tmp_path, GOOD.replace("default = true", 'app_names = ["Other"]'))
    assert table.pick(None, "Shop Mars") is None
    assert table.pick(None, None) is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (GOOD.replace('residency = "eu"', 'residencey = "eu"'), "routes.eu: unknown key 'residencey'"),
        (GOOD.replace('residency = "eu"', 'residency = "mars"'), "routes.eu.residency: Input should be 'us' or 'eu'"),
        (GOOD.replace('"EU_KEY"', '"NOT_SET_KEY"'), "routes.eu: the variable NOT_SET_KEY (its key) is not set"),
        (GOOD.replace('"Shop US staging"', '"Shop EU"'), "routes.us: app_name 'Shop EU' is already taken by routes.eu"),
        (
            GOOD.replace("[routes.rest]", '[routes.rest]\napp_names = ["x"]').replace(
                "\n[routes.us]", "\n[routes.us]\ndefault = true"
            ),
            "default = true on more than one route",
        ),
        (GOOD.replace('events = "EMAIL"', 'events = "channel:Pigeon"'), "routes.eu: "),
        (GOOD + "\n[other]\nx = 1\n", "unknown top-level key 'other'"),
        ("routes = [", "not TOML"),
    ],
)
def test_a_bad_routes_file_is_one_line_per_problem_naming_the_route(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(SettingsError) as raised:
        routes_from(tmp_path, text)
    message = str(raised.value)
    assert f"FORWARDER_ROUTES_FILE: {says}" in message
    assert "eu-secret-key" not in message
    assert "us-secret-key" not in message


def test_a_route_can_be_chosen_alone_for_replays(tmp_path: Path) -> None:
    table = routes_from(tmp_path, GOOD)
    only = table.only("us")
    assert only.limit == "us"
    assert only.pick(None, "Shop EU") is table.named("eu")  # picked as ever; the processor filters it
    with pytest.raises(ValueError, match="no route named 'mars'"):
        table.only("mars")


def test_the_example_beside_the_manifests_is_a_valid_routes_file() -> None:
    example = Path(__file__).resolve().parents[1] / "docker" / "k8s" / "routes.example.toml"
    env = {
        **BASE,
        "FORWARDER_ROUTES_FILE": str(example),
        "AMPLITUDE_API_KEY_EU": "k1",
        "AMPLITUDE_API_KEY_US": "k2",
    }
    table = load_routes(settings_from(env, WorkerSettings), env)
    assert [route.name for route in table.routes] == ["eu", "us", "rest"]
    assert table.pick(None, "Shop US staging") is table.named("us")
