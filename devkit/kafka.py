"""A real single-node Apache Kafka broker (KRaft) as a JVM process on loopback, for tests, benches and demos.

Follows shared/spec/kafka-local.md: broker jars resolved from Maven Central into a cache outside the
repository, a fresh data directory, free ports, ready when the client port accepts connections.
Broker choice (``broker_for``): ``KAFKA_BOOTSTRAP_SERVERS`` if set, else a Docker engine through
testcontainers if one answers, else this local broker.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from devkit.tls import Certificates

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
CACHE_VARIABLE = "FORWARDER_CACHE_DIR"
# Small heap and serial GC suit a 2-core machine; measured in the closing note of the foundation issue.
DEFAULT_JVM_OPTS = ("-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-Djava.awt.headless=true")
STATE_FILE = Path(".local") / "kafka.json"


class BrokerError(RuntimeError):
    pass


def cache_dir() -> Path:
    root = os.environ.get(CACHE_VARIABLE) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "moengage-amplitude-forwarder"
    )
    return Path(root)


def ensure_jars(quiet: bool = True) -> Path:
    """The broker's runtime classpath, resolved once per Kafka version with Maven. Processes that ask at once (the
    test suite's two) wait for the first: one resolves, the others find the result."""
    libs = cache_dir() / f"kafka-{KAFKA_VERSION}-log4j-{LOG4J_VERSION}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise BrokerError(
            "Maven ('mvn') is needed to fetch the Kafka broker jars; install it (e.g. apt-get install maven)"
        )
    libs.mkdir(parents=True, exist_ok=True)
    with open(libs.parent / ".resolving.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            _resolve(libs, quiet)
            marker.write_text(KAFKA_VERSION)
    return libs


def _resolve(libs: Path, quiet: bool) -> None:
    pom = resources.files("devkit").joinpath("kafka-pom.xml").read_text(encoding="utf-8")
    pom = pom.replace("<kafka.version>4.1.1</kafka.version>", f"<kafka.version>{KAFKA_VERSION}</kafka.version>")
    with tempfile.TemporaryDirectory() as tmp:
        pom_path = Path(tmp) / "pom.xml"
        pom_path.write_text(pom, encoding="utf-8")
        command = [
            "mvn",
            "-B",
            "-f",
            str(pom_path),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ]
        if quiet:
            command.insert(2, "-q")
        result = subprocess.run(command, capture_output=quiet, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout or "") + (result.stderr or "")
        raise BrokerError(f"Maven could not resolve Apache Kafka {KAFKA_VERSION}:\n{output[-3000:]}")


# Below Linux's ephemeral range (32768-60999): no outgoing connection is given one of these ports, so a port
# found free here stays free until the process it is for binds it (a broker's JVM takes seconds to).
FREE_PORTS = range(20_000, 32_000)


def free_port() -> int:
    for _ in range(100):
        port = random.choice(FREE_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # a crowded range: the kernel's choice
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


LOG4J2_PROPERTIES = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


@dataclass
class LocalKafka:
    """One broker+controller. ``start()`` formats a fresh data dir and waits until the client port opens."""

    data_dir: Path | None = None
    port: int = 0
    controller_port: int = 0
    extra_properties: dict[str, str] | None = None
    # user -> password: adds a SASL_PLAINTEXT (PLAIN) listener on ``sasl_port`` for those users.
    sasl_users: dict[str, str] | None = None
    sasl_port: int = 0
    # TLS (``devkit.tls``): adds an SSL listener on ``ssl_port`` that requires a client certificate signed by the
    # CA (mutual TLS), and, with ``scram_users``, a SASL_SSL (SCRAM-SHA-512) listener on ``sasl_ssl_port``.
    tls: Certificates | None = None
    ssl_port: int = 0
    scram_users: dict[str, str] | None = None
    sasl_ssl_port: int = 0
    jvm_opts: tuple[str, ...] = DEFAULT_JVM_OPTS
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "server.log"

    def _write_config(self) -> Path:
        assert self.data_dir is not None
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "1",
        }
        if self.sasl_users:
            users = " ".join(f'user_{name}="{password}"' for name, password in self.sasl_users.items())
            jaas = f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};"
            properties.update(
                {
                    "listeners": properties["listeners"] + f",SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}",
                    "advertised.listeners": properties["advertised.listeners"]
                    + f",SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}",
                    "listener.security.protocol.map": properties["listener.security.protocol.map"]
                    + ",SASL_PLAINTEXT:SASL_PLAINTEXT",
                    "sasl.enabled.mechanisms": "PLAIN",
                    "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
                }
            )
        if self.tls is not None:
            properties.update(self._tls_properties(properties))
        properties.update(self.extra_properties or {})
        config = self.data_dir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in properties.items()), encoding="utf-8")
        (self.data_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES.format(log=self.log_file), encoding="utf-8")
        return config

    def _tls_properties(self, properties: dict[str, str]) -> dict[str, str]:
        assert self.tls is not None
        listeners = [f"SSL://127.0.0.1:{self.ssl_port}"]
        protocols = ["SSL:SSL"]
        tls = {
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.tls.server),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.tls.ca),
            "listener.name.ssl.ssl.client.auth": "required",
        }
        if self.scram_users:
            listeners.append(f"SASL_SSL://127.0.0.1:{self.sasl_ssl_port}")
            protocols.append("SASL_SSL:SASL_SSL")
            module = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            tls |= {
                "listener.name.sasl_ssl.sasl.enabled.mechanisms": "SCRAM-SHA-512",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": module,
            }
        return tls | {
            "listeners": ",".join([properties["listeners"], *listeners]),
            "advertised.listeners": ",".join([properties["advertised.listeners"], *listeners]),
            "listener.security.protocol.map": ",".join([properties["listener.security.protocol.map"], *protocols]),
        }

    def start(self, timeout_s: float = 120.0, detach: bool = False) -> str:
        libs = ensure_jars()
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="forwarder-kafka-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        classpath = f"{libs}/*"
        java = shutil.which("java")
        if java is None:
            raise BrokerError("Java 17+ ('java') is needed to run the Kafka broker")
        # A free port is free when asked, not always when the JVM binds it seconds later: another process's
        # outgoing connection can take it meanwhile (seen with the test suite on two processes). Ports this broker
        # chose are chosen again, up to three times; ports it was given are kept.
        chosen = [
            name
            for name in ("port", "controller_port", "sasl_port", "ssl_port", "sasl_ssl_port")
            if not getattr(self, name)
        ]
        for attempt in (1, 2, 3):
            self.port = self.port or free_port()
            self.controller_port = self.controller_port or free_port()
            if self.sasl_users:
                self.sasl_port = self.sasl_port or free_port()
            if self.tls is not None:
                self.ssl_port = self.ssl_port or free_port()
                if self.scram_users:
                    self.sasl_ssl_port = self.sasl_ssl_port or free_port()
            self._format(java, classpath, self._write_config())
            for said in (self.log_file, self.data_dir / "stdout.log"):  # what this launch says, only
                said.unlink(missing_ok=True)
            try:
                self._launch(java, classpath, timeout_s, detach)
                return self.bootstrap_servers
            except BrokerError:
                if attempt == 3 or not chosen or "Address already in use" not in self._said():
                    raise
                for name in chosen:
                    setattr(self, name, 0)
        raise AssertionError("unreachable")

    def _said(self) -> str:
        assert self.data_dir is not None
        return "".join(
            path.read_text(errors="replace") for path in (self.log_file, self.data_dir / "stdout.log") if path.exists()
        )

    def _format(self, java: str, classpath: str, config: Path) -> None:
        assert self.data_dir is not None
        shutil.rmtree(self.data_dir / "logs", ignore_errors=True)  # a fresh format each launch
        # Seen twice while several brokers started at once on this 2-core machine, never alone: one more try, with
        # a fresh data dir (a format is cheap), before giving up with everything the tool said.
        for attempt in (1, 2):
            scram = [
                arg
                for name, password in (self.scram_users or {}).items()
                for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")
            ]
            storage = [java, "-cp", classpath, "kafka.tools.StorageTool", "format", "-t", _cluster_id()]
            fmt = subprocess.run(
                [*storage, "-c", str(config), *scram],
                capture_output=True,
                text=True,
                check=False,
            )
            if fmt.returncode == 0:
                return
            if attempt == 2:
                raise BrokerError(
                    f"formatting the Kafka data dir failed (exit {fmt.returncode}):\n{fmt.stdout}{fmt.stderr}"
                )
            shutil.rmtree(self.data_dir / "logs", ignore_errors=True)

    def _launch(self, java: str, classpath: str, timeout_s: float, detach: bool = False) -> None:
        assert self.data_dir is not None
        config = self.data_dir / "server.properties"
        log4j = self.data_dir / "log4j2.properties"
        with open(self.data_dir / "stdout.log", "ab") as out:
            self.process = subprocess.Popen(
                [
                    java,
                    *self.jvm_opts,
                    f"-Dlog4j2.configurationFile={log4j}",
                    "-cp",
                    classpath,
                    "kafka.Kafka",
                    str(config),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=detach,
            )
        deadline = time.monotonic() + timeout_s
        while not _port_open(self.port):
            if self.process.poll() is not None:
                raise BrokerError(f"the Kafka broker exited with {self.process.returncode}; see {self.log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"the Kafka broker was not ready within {timeout_s:.0f} s; see {self.log_file}")
            time.sleep(0.1)

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process is None:
            return
        stop_pid(self.process.pid, timeout_s, self.process)
        self.process = None

    def restart(self, timeout_s: float = 120.0) -> None:
        """Stop and start again on the same ports and data: a broker restart as operators see one."""
        self.stop()
        self._launch(shutil.which("java") or "java", f"{ensure_jars()}/*", timeout_s)


def stop_pid(pid: int, timeout_s: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM (graceful shutdown), then SIGKILL after ``timeout_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None:
            if process.poll() is not None:
                return
        elif not _alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if process is not None:
        process.wait(timeout=10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours still answers kill(0); /proc tells.
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/stat").read_text().split()
        if len(status) > 2 and status[2] == "Z":
            return False
    return True


def _docker_answers(socket_path: str = "/var/run/docker.sock") -> bool:
    """A Docker engine answers ``/_ping`` on its socket (``DOCKER_HOST`` is trusted as it is)."""
    if os.environ.get("DOCKER_HOST"):
        return True
    if not os.path.exists(socket_path):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(socket_path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            head = sock.recv(64)
            return head.startswith(b"HTTP/1.") and b" 200 " in head
    except OSError:
        return False


@contextlib.contextmanager
def broker_for(purpose: str = "tests") -> Iterator[str]:
    """Yields bootstrap servers: ``KAFKA_BOOTSTRAP_SERVERS``, else testcontainers, else the local JVM broker."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            yield container.get_bootstrap_server()
        return
    broker = LocalKafka()
    try:
        yield broker.start()
    finally:
        broker.stop()
        if broker.data_dir is not None:
            shutil.rmtree(broker.data_dir, ignore_errors=True)


# -- `make kafka` / `make kafka-stop`: a broker that outlives the command ---------------------------------


def start_background(state_file: Path = STATE_FILE) -> str:
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if _alive(state["pid"]) and _port_open(state["port"]):
            return f"127.0.0.1:{state['port']}"
        state_file.unlink()
    broker = LocalKafka(data_dir=Path(tempfile.mkdtemp(prefix="forwarder-kafka-")))
    servers = broker.start(detach=True)
    assert broker.process is not None
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(
        json.dumps({"pid": broker.process.pid, "port": broker.port, "data_dir": str(broker.data_dir)})
    )
    return servers


def stop_background(state_file: Path = STATE_FILE) -> bool:
    if not state_file.exists():
        return False
    state = json.loads(state_file.read_text())
    stop_pid(state["pid"])
    shutil.rmtree(state["data_dir"], ignore_errors=True)
    state_file.unlink()
    return True
