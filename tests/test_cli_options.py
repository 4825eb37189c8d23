"""The command line's global options and option checks: --version, -v / -vv, --store as a
SQLite path or a SQLAlchemy URL (also from $MAILPARITY_STORE), one-line errors for bad option
values, sync progress in messages (a bar on a terminal, lines in a log) and worker output."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

import mailparity
from mailparity._cliprogress import SyncProgress, WorkerOutput
from mailparity.cli import _configure_logging, build_parser, main
from mailparity.processing import MessageResult

SECRET_PASSWORD = "s3cret-Pa55"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code: int, out: str, err: str, contains: str) -> None:
    """Exit 2; the usage, then exactly one ``mailparity: error:`` line; no traceback."""
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith("mailparity: error:"), err
    assert contains in lines[-1], err
    assert all(line.startswith(("usage: ", " ")) for line in lines[:-1]), err
    assert "Traceback" not in err + out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.strip() == f"mailparity {mailparity.__version__}"


@pytest.mark.parametrize(
    ("argv", "contains"),
    [
        (["serve", "--port", "99999"], "--port: 99999 must be 65535 or less"),
        (["serve", "--port", "0"], "--port: 0 must be 1 or more"),
        (["serve", "--port", "http"], "--port: 'http' is not an integer"),
        (["serve", "--threads", "0"], "--threads: 0 must be 1 or more"),
        (["serve", "--read-timeout", "-1"], "--read-timeout: -1 must be 1 or more"),
        (["serve", "--max-body-bytes", "1e9"], "--max-body-bytes: '1e9' is not an integer"),
        (["maintain", "--loop", "--interval", "-5"], "--interval: -5 must be more than 0"),
        (["maintain", "--interval", "0"], "--interval: 0 must be more than 0"),
        (["maintain", "--interval", "nan"], "--interval: 'nan' is not a finite number"),
        (["maintain", "--silence-minutes", "inf"], "'inf' is not a finite number"),
        (["worker", "--threads", "-3"], "--threads: -3 must be 1 or more"),
        (["listen", "--worker", "--threads", "0"], "--threads: 0 must be 1 or more"),
        (["jobs", "list", "--limit", "0"], "--limit: 0 must be 1 or more"),
        (["events", "tail", "-n", "-1"], "-n: -1 must be 0 or more"),
    ],
)
def test_bad_option_values_are_one_line_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], contains: str
) -> None:
    code, out, err = run(capsys, "--store", str(tmp_path / "s.sqlite3"), *argv)
    assert_usage_error(code, out, err, contains)


def test_good_option_values_parse() -> None:
    args = build_parser().parse_args(["serve", "--port", "65535", "--threads", "2"])
    assert (args.port, args.threads) == (65535, 2)
    args = build_parser().parse_args(["maintain", "--interval", "0.5"])
    assert args.interval == 0.5


@pytest.mark.parametrize(
    ("argv", "verbosity"),
    [([], 0), (["-v"], 1), (["-vv"], 2), (["-v", "-v"], 2), (["--verbose"], 2),
     (["-v", "--verbose"], 2), (["-vvv"], 3)],
)
def test_verbosity_flags(argv: list[str], verbosity: int) -> None:
    args = build_parser().parse_args([*argv, "providers", "list"])
    assert args.verbosity == verbosity
    assert args.verbose is (verbosity > 0)


@pytest.mark.parametrize(
    ("verbosity", "level"), [(0, logging.NOTSET), (1, logging.INFO), (2, logging.DEBUG)]
)
def test_verbosity_raises_only_mailparity_loggers(verbosity: int, level: int) -> None:
    ours, theirs = logging.getLogger("mailparity"), logging.getLogger("urllib3")
    before = (ours.level, theirs.level, logging.getLogger().level)
    restore = _configure_logging(verbosity, [])
    try:
        assert ours.level == level
        assert theirs.level == before[1]  # other libraries' logs can hold tokens
        assert logging.getLogger().level == logging.WARNING
    finally:
        restore()
    assert (ours.level, theirs.level, logging.getLogger().level) == before


def test_debug_logger_still_works() -> None:
    restore = _configure_logging(1, ["urllib3"])
    try:
        assert logging.getLogger("urllib3").level == logging.DEBUG
        assert logging.getLogger("mailparity").level == logging.INFO
    finally:
        restore()


def test_dash_v_shows_mailparity_info_lines(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    store = str(tmp_path / "s.sqlite3")
    assert run(capsys, "--store", store, "sync")[0] == 0
    assert not [r for r in caplog.records if r.levelno < logging.WARNING]
    assert run(capsys, "--store", store, "-v", "sync")[0] == 0
    info = [r for r in caplog.records if r.levelno == logging.INFO]
    assert [(r.name, r.getMessage()) for r in info] == [
        ("mailparity.cli", "sync of 0 providers: none connected")
    ]
    assert not [r for r in caplog.records if r.levelno < logging.INFO]


# ---------------------------------------------------------------------------- --store URL


def test_store_as_a_sqlalchemy_url(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sql.db'}"
    code, out, err = run(capsys, "db", "upgrade", "--url", url)
    assert code == 0, err
    code, out, err = run(capsys, "--store", url, "providers", "list")
    assert code == 0, err
    assert "no providers" in out
    code, out, err = run(capsys, "--store", url, "jobs", "list")
    assert (code, out.strip()) == (0, "no jobs")


def test_store_url_from_the_environment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    assert run(capsys, "db", "upgrade", "--url", url)[0] == 0
    monkeypatch.setenv("MAILPARITY_STORE", url)
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["providers", "list"])
    assert args.store == url
    code, out, err = run(capsys, "providers", "list")
    assert code == 0, err
    assert "no providers" in out
    assert not (tmp_path / "mailparity.sqlite3").exists()  # not the default file


def test_store_url_without_schema_says_how_to_create_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _out, err = run(capsys, "--store", f"sqlite:///{tmp_path / 'new.db'}", "providers",
                         "list")
    assert code == 1
    [line] = err.strip().splitlines()
    assert line.startswith("mailparity: error: StoreError")
    assert "db upgrade" in line


@pytest.mark.parametrize(
    ("url", "contains"),
    [
        (f"nosuchdb://user:{SECRET_PASSWORD}@localhost/db", "runs on PostgreSQL or SQLite"),
        (f"postgresql+nosuchdriver://user:{SECRET_PASSWORD}@localhost/db",
         "cannot use the store URL"),
        (f"mysql://user:{SECRET_PASSWORD}@localhost/db", "runs on PostgreSQL or SQLite"),
        ("://", "neither a SQLite file path nor a valid SQLAlchemy URL"),
    ],
)
def test_bad_store_urls_are_one_line_without_the_password(
    capsys: pytest.CaptureFixture[str], url: str, contains: str
) -> None:
    code, out, err = run(capsys, "--store", url, "providers", "list")
    assert code == 2
    [line] = err.strip().splitlines()
    assert line.startswith("mailparity: error:"), line
    assert contains in line, line
    assert SECRET_PASSWORD not in err + out


def test_unreachable_database_hides_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("psycopg")
    # Port 1 on loopback: refused at once.
    url = f"postgresql+psycopg://user:{SECRET_PASSWORD}@127.0.0.1:1/db?connect_timeout=2"
    code, out, err = run(capsys, "--store", url, "providers", "list")
    assert code == 1
    [line] = err.strip().splitlines()
    assert line.startswith("mailparity: error: StoreError")
    assert SECRET_PASSWORD not in err + out


# ---------------------------------------------------------------------------- progress


class Ticks:
    """A monotonic clock advanced by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _done(progress: SyncProgress | WorkerOutput, status: str = "published") -> None:
    progress.message_done("acme", "m", MessageResult(status, event_id="e1"))  # type: ignore[arg-type]


def test_sync_progress_in_a_log_is_periodic_lines() -> None:
    out, ticks = io.StringIO(), Ticks()
    progress = SyncProgress(out, tty=False, clock=ticks, interval=5.0)
    progress.messages_found("acme", 250)
    for n in range(250):
        ticks.now = n * 0.1  # 25 seconds in all
        _done(progress, "duplicate" if n % 50 == 0 else "published")
    progress.finish()

    text = out.getvalue()
    assert "\r" not in text
    assert "\x1b" not in text
    lines = text.splitlines()
    assert lines[0] == "sync: 0/250 messages"
    assert 5 <= len(lines) <= 8  # about one line per 5 seconds, not one per message
    assert lines[-1] == "sync: 250/250 messages (245 published, 5 duplicate)"


def test_sync_progress_on_a_terminal_is_a_bar() -> None:
    out, ticks = io.StringIO(), Ticks()
    progress = SyncProgress(out, tty=True, clock=ticks, width=10)
    progress.messages_found("acme", 4)
    for n in range(4):
        ticks.now = n + 1.0
        _done(progress)
    progress.finish()

    text = out.getvalue()
    assert text.count("\n") == 1  # one line, redrawn in place
    assert text.endswith("\n")
    frames = text.rstrip("\n").split("\r")[1:]
    assert frames[0].startswith("[----------] sync: 0/4 messages")
    assert frames[2].startswith("[#####-----] sync: 2/4 messages (2 published)")
    assert frames[-1].startswith("[##########] sync: 4/4 messages (4 published)")


def test_sync_progress_with_nothing_to_do() -> None:
    out = io.StringIO()
    progress = SyncProgress(out, tty=False)
    progress.finish()
    assert out.getvalue() == "sync: 0/0 messages\n"


def test_worker_output_lines() -> None:
    out = io.StringIO()
    output = WorkerOutput(out)
    output.messages_found("acme", 3)
    output.messages_found("acme", 0)
    _done(output)
    output.message_done("acme", "x" * 100, MessageResult("retry", error="publish failed: E"))
    lines = out.getvalue().splitlines()
    assert lines == [
        "worker: catch-up of acme: 3 messages to handle",
        "worker: published acme message m event e1",
        f"worker: retry acme message {'x' * 39}…: publish failed: E",
    ]
    assert output.summary() == "1 published, 1 retry"


def test_worker_says_what_it_does(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailparity.worker import Worker

    def drained(self: Worker) -> int:
        assert self.processor.progress is not None  # the worker's lines come from it
        return 0

    monkeypatch.setattr(Worker, "run", drained)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    assert run(capsys, "db", "upgrade", "--url", url)[0] == 0
    code, _, err = run(capsys, "--store", url.replace("///", "///"), "worker", "--threads", "2")
    assert code == 0, err
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"worker: processing the jobs of {url} with 2 threads")
    assert lines[-1] == "worker: stopped after 0 jobs (no messages)"
