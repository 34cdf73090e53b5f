"""``scripts/run`` starts web, worker and beat on the embedded defaults and stops all of them.

These tests run the real script in a temporary VAR_DIR (SQLite, filesystem broker, captured
mail) on a free port, talk to it over HTTP, push tasks through the filesystem broker, and check
that no process outlives it.
"""

from __future__ import annotations

import http.cookiejar
import importlib.machinery
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import ModuleType

import psutil
import pytest
from project_helpers import ROOT, free_port, site_env

START_TIMEOUT = 180  # first start migrates and collects static files; CI has 2 busy cores


def load_script(name: str) -> ModuleType:
    """Import an extension-less script from scripts/ as a module."""
    path = ROOT / "scripts" / name
    module_name = "scripts_" + name.replace(".", "_")
    loader = importlib.machinery.SourceFileLoader(module_name, str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def venv_env() -> dict[str, str]:
    """Point the script at the venv running the tests, so it installs nothing new."""
    return {"VENV_DIR": sys.prefix} if sys.prefix != sys.base_prefix else {}


class RunningSite:
    """``scripts/run`` in a subprocess, with its output collected line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.port = int(env["PORT"])
        self.lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "run")],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self.seen: dict[int, psutil.Process] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """The first output line matching ``pattern``; fails the test with the output if none."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        checked = 0
        with self._changed:
            while True:
                for line in self.lines[checked:]:
                    if match := regex.search(line):
                        return match
                checked = len(self.lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (
                    self.process.poll() is not None and checked == len(self.lines)
                ):
                    tail = "\n".join(self.lines[-60:])
                    pytest.fail(f"no line matched {pattern!r}; output ended with:\n{tail}")
                self._changed.wait(min(remaining, 0.5))

    def remember_processes(self) -> list[psutil.Process]:
        """Every process started under the script so far (kept for the cleanup check)."""
        try:
            for proc in psutil.Process(self.process.pid).children(recursive=True):
                self.seen.setdefault(proc.pid, proc)
        except psutil.NoSuchProcess:
            pass
        return list(self.seen.values())

    def alive_processes(self) -> list[psutil.Process]:
        alive = []
        for proc in self.seen.values():
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.NoSuchProcess:
                pass
        return alive

    def shell(self, code: str) -> None:
        """Run Python code in ``manage.py shell`` against the same site (another process)."""
        subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "shell", "-c", code],
            cwd=ROOT,
            env=self.env,
            check=True,
            timeout=120,
        )

    def cleanup(self) -> None:
        """Kill anything still running, so a failing test leaves no process behind."""
        self.remember_processes()
        self.process.kill()
        for proc in self.alive_processes():
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        self.process.wait(timeout=30)


@pytest.fixture
def start_site(site_var_dir: Path):
    """Start ``scripts/run`` in the test's VAR_DIR; whatever is left is killed afterwards."""
    started: list[RunningSite] = []

    def start(**overrides: str) -> RunningSite:
        env = site_env(site_var_dir, PORT=str(free_port()), **venv_env(), **overrides)
        site = RunningSite(env)
        started.append(site)
        return site

    yield start
    for site in started:
        site.cleanup()


def http_session() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )


def log_in(
    base_url: str,
    username: str,
    password: str,
    opener: urllib.request.OpenerDirector | None = None,
) -> str:
    """Log in to the admin through its login form; return the page the login lands on."""
    opener = opener or http_session()
    with opener.open(f"{base_url}/admin/login/", timeout=10) as response:
        assert response.status == 200
        form = response.read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert token, "the login page has no CSRF token"
    data = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": token.group(1),
            "username": username,
            "password": password,
            "next": "/admin/",
        }
    ).encode()
    request = urllib.request.Request(
        f"{base_url}/admin/login/?next=/admin/", data=data, headers={"Referer": base_url}
    )
    with opener.open(request, timeout=10) as response:
        assert response.status == 200
        return response.read().decode()


def test_run_command_serves_admin_runs_tasks_and_stops_cleanly(start_site) -> None:
    site = start_site()
    url = site.wait_for(r"==> The site is running at (\S+)", START_TIMEOUT).group(1)
    assert url == f"http://127.0.0.1:{site.port}/admin/"
    password = site.wait_for(r"Log in as 'admin' with password (\S+)").group(1)
    base_url = url.removesuffix("/admin/")

    # The admin answers, the generated credentials work, and whitenoise serves static files.
    page = log_in(base_url, "admin", password)
    assert "Site administration" in page, page[:500]
    with urllib.request.urlopen(f"{base_url}/static/admin/css/base.css", timeout=10) as response:
        assert response.status == 200
    var_dir = Path(site.env["VAR_DIR"])
    assert (var_dir / "admin-password.txt").read_text().strip() == password
    # What the site keeps is its owner's only.
    assert var_dir.stat().st_mode & 0o777 == 0o700
    for name in ("db.sqlite3", "admin-password.txt"):
        assert (var_dir / name).stat().st_mode & 0o777 == 0o600, name

    # Tasks sent by another process go through the filesystem broker to the worker, each once.
    tokens = [f"tok-{i}" for i in range(20)]
    site.shell(
        "from config.celery import debug_task\n"
        f"for token in {tokens!r}:\n"
        "    debug_task.delay(token)\n"
    )
    for token in tokens:
        site.wait_for(rf"^worker .*Task config\.debug_task\[.*\] succeeded in .*'{token}'$")
    # beat reads its schedule from the database (django-celery-beat) and the worker runs it.
    site.shell(
        "import json\n"
        "from django_celery_beat.models import IntervalSchedule, PeriodicTask\n"
        "every = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)\n"
        "PeriodicTask.objects.create(name='beat check', task='config.debug_task',\n"
        "    interval=every, args=json.dumps(['from-beat']))\n"
    )
    site.wait_for(r"^beat .*Sending due task beat check \(config\.debug_task\)")
    site.wait_for(r"^worker .*Task config\.debug_task\[.*\] succeeded in .*'from-beat'$")
    executed = re.findall(r"succeeded in \S+: '(tok-\d+)'", site.output)
    assert sorted(executed) == sorted(tokens), "a task ran twice or not at all"

    processes = site.remember_processes()
    names = " ".join(" ".join(p.cmdline()) for p in processes)
    assert "gunicorn" in names and "worker" in names and "beat" in names
    assert len(processes) >= 7  # web master + 2 workers, worker + 2 pool processes, beat

    site.process.send_signal(signal.SIGINT)
    assert site.process.wait(timeout=90) == 0, site.output[-3000:]
    assert site.alive_processes() == []
    assert "==> Stopped" in site.output
    assert "Warm shutdown" in site.output  # the worker was asked, not killed
    assert "Killing what is left" not in site.output


def test_run_command_uses_env_credentials_and_stops_all_when_one_process_dies(start_site) -> None:
    site = start_site(
        DJANGO_SUPERUSER_USERNAME="operator",
        DJANGO_SUPERUSER_PASSWORD="a-long-operator-password",
        DJANGO_SUPERUSER_EMAIL="operator@example.org",
    )
    site.wait_for(r"==> The site is running at", START_TIMEOUT)
    site.wait_for(r"Log in as 'operator' with the password from DJANGO_SUPERUSER_PASSWORD")
    assert "Site administration" in log_in(
        f"http://127.0.0.1:{site.port}", "operator", "a-long-operator-password"
    )

    processes = site.remember_processes()
    beat = next(p for p in processes if "beat" in p.cmdline() and p.ppid() == site.process.pid)
    beat.kill()

    assert site.process.wait(timeout=90) == 1
    site.wait_for(r"==> beat exited with status -9; stopping the others")
    assert site.alive_processes() == []


def csrf_token(page: str) -> str:
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token, "the page has no CSRF token"
    return token.group(1)


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "----ace-test-boundary-7d1f"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n')
        parts.append(f"{value}\r\n")
    chunks = [part.encode() for part in parts]
    for name, (filename, content) in files.items():
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: text/csv\r\n\r\n'.encode()
        )
        chunks += [content, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def test_a_big_import_runs_in_the_worker_and_its_page_follows_it(start_site) -> None:
    site = start_site(
        DJANGO_SUPERUSER_USERNAME="operator",
        DJANGO_SUPERUSER_PASSWORD="a-long-operator-password",
        CAMPAIGNS_IMPORT_BACKGROUND_ROWS="10",
    )
    site.wait_for(r"==> The site is running at", START_TIMEOUT)
    base_url = f"http://127.0.0.1:{site.port}"
    site.shell("from campaigns.models import RecipientList as L; L.objects.create(name='Big')")
    opener = http_session()
    log_in(base_url, "operator", "a-long-operator-password", opener)
    import_url = f"{base_url}/admin/campaigns/recipientlistentry/import/"
    with opener.open(import_url, timeout=10) as response:
        page = response.read().decode()
    list_id = re.search(r'<option value="(\d+)">Big</option>', page).group(1)
    rows = "email,first_name\n" + "".join(f"u{i}@example.org,U{i}\n" for i in range(300))
    body, content_type = multipart(
        {
            "csrfmiddlewaretoken": csrf_token(page),
            "recipient_list": list_id,
            "resource": "0",
            "format": "0",
        },
        {"import_file": ("big.csv", rows.encode())},
    )
    request = urllib.request.Request(
        import_url, data=body, headers={"Content-Type": content_type, "Referer": import_url}
    )
    with opener.open(request, timeout=30) as response:  # redirected to the job's page
        status_url = response.geturl()
        assert re.search(r"/import/[0-9a-f]{32}/$", status_url), status_url
    site.wait_for(r"^worker .*Task campaigns\.tasks\.import_recipient_list\[.*\] succeeded")
    with opener.open(status_url, timeout=10) as response:
        page = " ".join(response.read().decode().split())
    assert "Imported 300 recipients into “Big”" in page, page[-2000:]
    site.process.send_signal(signal.SIGINT)
    assert site.process.wait(timeout=90) == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_processes_stop_by_themselves_when_the_run_command_is_killed(start_site) -> None:
    site = start_site()
    site.wait_for(r"==> The site is running at", START_TIMEOUT)
    processes = site.remember_processes()
    assert len(processes) >= 7

    site.process.kill()  # no chance to clean up: the children must notice on their own
    site.process.wait(timeout=10)
    deadline = time.monotonic() + 60
    while site.alive_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert site.alive_processes() == []


def test_run_command_refuses_a_busy_port_before_doing_anything(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "run")],
            cwd=ROOT,
            env=site_env(tmp_path / "var", PORT=str(port), **venv_env()),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode != 0
    assert f"Cannot listen on 127.0.0.1:{port}" in result.stderr
    assert not (tmp_path / "var" / "db.sqlite3").exists()  # nothing was migrated


# ensure_admin, in process against the test database ------------------------------------------


def authenticate(**credentials: str):
    """Django's authenticate() as the login form calls it: django-axes needs the request."""
    from django.contrib.auth import authenticate as django_authenticate
    from django.test import RequestFactory

    return django_authenticate(RequestFactory().post("/admin/login/"), **credentials)


@pytest.fixture
def run_script(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    for name in (
        "DJANGO_SUPERUSER_USERNAME",
        "DJANGO_SUPERUSER_PASSWORD",
        "DJANGO_SUPERUSER_EMAIL",
    ):
        monkeypatch.delenv(name, raising=False)
    return load_script("run")


@pytest.mark.django_db
def test_generated_admin_password_is_created_once_and_never_reset(run_script, tmp_path) -> None:
    first = run_script.ensure_admin(tmp_path)
    password = re.search(r"with password (\S+)", first).group(1)
    assert (tmp_path / "admin-password.txt").read_text().strip() == password
    assert (tmp_path / "admin-password.txt").stat().st_mode & 0o077 == 0  # owner only

    second = run_script.ensure_admin(tmp_path)
    assert password not in second
    assert "password saved in" in second
    assert authenticate(username="admin", password=password) is not None


@pytest.mark.django_db
def test_admin_from_environment(run_script, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "ops")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "correct horse battery")
    assert "'ops'" in run_script.ensure_admin(tmp_path)
    user = authenticate(username="ops", password="correct horse battery")
    assert user is not None and user.is_superuser and user.is_staff
    assert not (tmp_path / "admin-password.txt").exists()

    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "another password")
    assert "was not changed" in run_script.ensure_admin(tmp_path)
    assert authenticate(username="ops", password="correct horse battery") is not None


@pytest.mark.django_db
def test_admin_username_without_password_is_refused(run_script, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "ops")
    with pytest.raises(SystemExit, match="DJANGO_SUPERUSER_PASSWORD is not"):
        run_script.ensure_admin(tmp_path)


def test_make_private_tightens_what_an_older_run_left_readable(run_script, tmp_path) -> None:
    var_dir = tmp_path / "var"
    var_dir.mkdir(mode=0o755)
    var_dir.chmod(0o755)
    database = var_dir / "db.sqlite3"
    for path in (database, var_dir / "db.sqlite3-wal", var_dir / "admin-password.txt"):
        path.write_text("x")
        path.chmod(0o644)

    run_script.make_private(var_dir, database)
    assert var_dir.stat().st_mode & 0o777 == 0o700
    for name in ("db.sqlite3", "db.sqlite3-wal", "admin-password.txt"):
        assert (var_dir / name).stat().st_mode & 0o777 == 0o600, name

    fresh = tmp_path / "new" / "var"
    run_script.make_private(fresh, None)
    assert fresh.stat().st_mode & 0o777 == 0o700


# bootstrap: the venv is installed once and again only when the requirements change -------------


def test_bootstrap_installs_only_when_requirements_change(tmp_path, monkeypatch) -> None:
    bootstrap = load_script("bootstrap.py")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    monkeypatch.setenv("VENV_DIR", str(venv))
    calls: list[list[str]] = []
    monkeypatch.setattr(bootstrap.subprocess, "run", lambda argv, **kw: calls.append(argv))

    bootstrap.ensure_venv("requirements-test.txt")
    installed = [" ".join(argv) for argv in calls]
    assert any("-r" in argv and argv.endswith("requirements-test.txt") for argv in installed)
    assert any("-e" in argv for argv in installed)  # editable, so entry points register
    stamp = json.loads((venv / bootstrap.STAMP_NAME).read_text())
    assert set(stamp) == {"requirements.txt", "requirements-test.txt", "pyproject.toml"}

    calls.clear()
    bootstrap.ensure_venv("requirements-test.txt")
    bootstrap.ensure_venv("requirements.txt")  # a subset of what is installed
    assert calls == []

    stamp["pyproject.toml"] = "changed"
    (venv / bootstrap.STAMP_NAME).write_text(json.dumps(stamp))
    bootstrap.ensure_venv("requirements.txt")
    assert any("-e" in argv for argv in calls)


def test_bootstrap_refuses_old_python(monkeypatch) -> None:
    bootstrap = load_script("bootstrap.py")
    monkeypatch.setattr(bootstrap.sys, "version_info", (3, 10, 12))
    with pytest.raises(SystemExit, match=r"Python 3\.11\+ is needed"):
        bootstrap.check_python()


def test_scripts_are_executable() -> None:
    for name in ("run", "test"):
        assert os.access(ROOT / "scripts" / name, os.X_OK), name
