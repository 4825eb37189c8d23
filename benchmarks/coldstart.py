"""Cold start: fresh interpreters importing each side, and the first Graph notification handled
and published in a fresh process (import, handler, notification, fetch from the replay server,
event), the way a serverless webhook endpoint or a short-lived worker starts.

Bytecode is compiled first, as ``pip install`` does: a process that compiles mailparity's
sources on every start (``PYTHONDONTWRITEBYTECODE`` set on a source checkout) measures the
compiler instead. Sides run interleaved; each figure is the median over the runs of the wall
time from process start to exit, and of the CPU time the process used (steadier on a loaded
machine).
"""

from __future__ import annotations

import compileall
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _env import median

HERE = Path(__file__).resolve().parent

IMPORTS = {
    "python (nothing)": "pass",
    "requests + pydantic": "import requests, pydantic",
    "requests + pydantic + msal": "import requests, pydantic, msal",
    # `import pydantic` alone loads little (its names load on first access): what defining and
    # using a model costs, for reference.
    "requests + pydantic BaseModel + msal": (
        "import requests, msal\nfrom pydantic import BaseModel\n"
        "class M(BaseModel):\n    a: int\nM(a=1)"
    ),
    "mailparity": "import mailparity",
    # The adapter classes themselves (the provider packages load them on first use).
    "mailparity Graph adapter": "from mailparity.providers.graph import MicrosoftGraphAdapter",
    "msgraph-sdk": "from msgraph import GraphServiceClient",
    "mailparity Gmail adapter": "from mailparity.providers.gmail import GmailAdapter",
    "google-api-python-client": (
        "from googleapiclient.discovery import build\nimport google.oauth2.credentials"
    ),
}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(args: list[str], stdin: str | None = None) -> tuple[float, float, str]:
    cpu = _children_cpu()
    start = time.perf_counter()
    result = subprocess.run(args, input=stdin, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, args, result.stdout,
                                            result.stderr)
    return wall, _children_cpu() - cpu, result.stdout


def compile_bytecode() -> None:
    import mailparity

    compileall.compile_dir(str(Path(mailparity.__file__).parent), quiet=1)


def first_webhook_spec(boxes: Any, index: int, message_id: str) -> str:
    """The child's input: the mailbox's config and secrets, and one notification body."""
    from latency import _notification

    config = boxes.configs[index]
    tokens = boxes.tokens[index]
    return json.dumps({
        "config": config.model_dump(mode="json"),
        "secrets": {
            "client_secret": "fake-client-secret",
            "webhook_verification_token": config.webhook_verification_token.get_secret_value(),
            "access_token": tokens.access_token.get_secret_value(),
            "refresh_token": tokens.refresh_token.get_secret_value(),
            "expires_at": tokens.expires_at.isoformat(),
        },
        "body": json.loads(_notification(boxes, index, message_id)),
    })


def cold_start(boxes: Any, runs: int = 7) -> dict[str, dict[str, float | None]]:
    """``{side: {"wall": s, "cpu": s}}`` for every import of :data:`IMPORTS` and for
    ``first Graph webhook``; None where a side is not installed."""
    compile_bytecode()
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label in IMPORTS}
    samples["first Graph webhook"] = []
    missing: set[str] = set()
    for run in range(runs):
        for label, code in IMPORTS.items():
            if label in missing:
                continue
            try:
                wall, cpu, _ = _run([sys.executable, "-c", code])
            except subprocess.CalledProcessError:
                missing.add(label)
                continue
            samples[label].append((wall, cpu))
        spec = first_webhook_spec(boxes, 0, f"e2e-cold-{run}-{time.monotonic_ns()}")
        wall, cpu, out = _run([sys.executable, str(HERE / "_child.py"), "first-webhook"], spec)
        if json.loads(out).get("events") != 1:
            raise RuntimeError(f"first webhook published no event: {out}")
        samples["first Graph webhook"].append((wall, cpu))
    return {
        label: (
            {"wall": median([w for w, _ in values]), "cpu": median([c for _, c in values])}
            if values else {"wall": None, "cpu": None}
        )
        for label, values in samples.items()
    }


def loaded_by_import() -> str:
    """Provider libraries that ``import mailparity, mailparity.webhooks`` loads (none, ideally:
    each is loaded when its provider is first used)."""
    check = (
        "import sys, mailparity, mailparity.webhooks;"
        "print(sorted(m for m in ('msal','googleapiclient','google.auth','google.oauth2',"
        "'msgraph','httplib2','sqlalchemy') if m in sys.modules))"
    )
    return subprocess.run([sys.executable, "-c", check], check=True, capture_output=True,
                          text=True).stdout.strip()
