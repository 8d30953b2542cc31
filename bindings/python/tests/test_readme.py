"""Every code block of README.md runs as shown, and so does every example.

Each ```python block is a program of its own: written to a file and run in a fresh process with
this interpreter (a block defining ``test_`` functions is run with pytest, as a user's test file
would be), with a timeout, against a ``FakeRegistry`` whose settings are in the ``ICR_*``
variables every tool of the project reads (``ICR_PRIVATE_KEY`` the path of a key file, as
``icr-app mock`` exports it) and no other ``ICR_*`` variable from this environment. A block that
reads ``ICR_REDIS_URL`` gets a ``redis-server`` of its own (skipped, saying so, without one).
Every python block passes ``mypy --strict`` too.

The ```sh blocks run with bash from the repository's root, this interpreter's directory first on
``PATH`` (so ``python`` is this venv's), unless they are listed in ``SH_NOT_RUN`` with the reason;
either way every ``bindings/...`` path they name must exist. Blocks of any other language fail
the test: a new kind of block needs a decision here, not silence.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import httpx
import pytest

from icr_app.testing import FakeRegistry

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parent  # bindings/python
ROOT = PACKAGE.parents[1]  # the repository
README = PACKAGE / "README.md"
EXAMPLES = PACKAGE / "examples"

#: Seconds one block or example may take (the slowest sleeps a second for a ``Retry-After``).
TIMEOUT = 60.0

#: The sh blocks not run, by their first line, and why.
SH_NOT_RUN = {
    "pip install ./bindings/python": (
        "installing builds a wheel of the extension (minutes on a small machine) and would replace "
        "this venv's development install, which the suite is testing; the package is installed here "
        "by `maturin develop` (run-tests.sh); the paths and the extra it names are checked"
    ),
    "cargo run -p icr-app-cli -- mock": (
        "serves until Ctrl-C; cli/tests/cli.rs runs `icr-app mock`, and the examples' block runs with "
        "the same ICR_* settings from a FakeRegistry"
    ),
    "bash bindings/python/run-tests.sh": "runs this very suite (and the benchmark, minutes of release build)",
}


@dataclass(frozen=True)
class Block:
    language: str
    line: int  # of the opening fence, 1-based
    heading: str
    code: str

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        return f"{self.language}-L{self.line}-{slug}"


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text``, in order."""
    blocks = []
    heading = ""
    fence: Optional[tuple[str, int]] = None
    lines: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if fence is None:
            if line.startswith("#"):
                heading = line.lstrip("#").strip()
            opening = re.fullmatch(r"```\s*(\S*)\s*", line)
            if opening:
                fence, lines = (opening.group(1), number), []
        elif line.strip() == "```":
            blocks.append(Block(fence[0], fence[1], heading, "\n".join(lines) + "\n"))
            fence = None
        else:
            lines.append(line)
    assert fence is None, f"README.md: the block opened on line {fence[1]} is never closed"
    return blocks


BLOCKS = readme_blocks(README.read_text())
PYTHON = [b for b in BLOCKS if b.language == "python"]
SH = [b for b in BLOCKS if b.language == "sh"]


def test_every_block_is_python_or_sh() -> None:
    others = [f"line {b.line}: ```{b.language}" for b in BLOCKS if b.language not in ("python", "sh")]
    assert not others, f"README.md blocks this test does not know how to run: {others}"
    assert PYTHON and SH, "README.md lost its blocks?"


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[tuple[FakeRegistry, dict[str, str]]]:
    """A demo registry, and this environment without its ``ICR_*`` variables but with the
    registry's settings, the key in a file of its own."""
    with FakeRegistry.demo() as registry:
        assert registry.app_id is not None and registry.private_key_pem is not None
        key = tmp_path / "icr-private-key.pem"
        key.write_text(registry.private_key_pem)
        key.chmod(0o600)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ICR_")}
        env.update(
            ICR_BASE_URL=registry.base_url,
            ICR_APP_ID=registry.app_id,
            ICR_PRIVATE_KEY=str(key),
            ICR_INSTALLATION_ID=registry.installation_ids[0],
            ICR_ORGANIZATION_ID=registry.organization_ids[0],  # its organization, as `icr-app mock` exports
            PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            PYTHONUNBUFFERED="1",
        )
        yield registry, env


def without_settings(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith("ICR_")}


def run(command: list[str], env: dict[str, str], cwd: Path, what: str) -> str:
    """Runs ``command``; fails the test with its output unless it exits 0 in time. Its stdout."""
    try:
        done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{what}: still running after {TIMEOUT} s\n--- stdout\n{e.stdout!r}\n--- stderr\n{e.stderr!r}")
    if done.returncode != 0:
        pytest.fail(f"{what}: exit status {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
    return done.stdout


@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
def test_python_block_runs(
    block: Block, settings: tuple[FakeRegistry, dict[str, str]], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    _, env = settings
    if "ICR_REDIS_URL" in block.code:
        env["ICR_REDIS_URL"] = request.getfixturevalue("redis_url")  # skips, saying why, without redis-server
    script = tmp_path / f"readme_line_{block.line}.py"
    script.write_text(block.code)
    what = f"README.md's python block on line {block.line} ({block.heading})"
    if re.search(r"^def test_", block.code, re.MULTILINE):
        out = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", script.name], env, tmp_path, what)
        assert re.search(r"\b[1-9]\d* passed\b", out), f"{what}: no test passed\n{out}"
    else:
        run([sys.executable, script.name], env, tmp_path, what)


def test_python_blocks_type_check(tmp_path: Path) -> None:
    """Pasted into a project checked with ``mypy --strict``, no block needs a change."""
    for block in PYTHON:
        (tmp_path / f"readme_line_{block.line}.py").write_text(block.code)
    files = sorted(p.name for p in tmp_path.glob("readme_line_*.py"))
    command = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / ".mypy_cache"), *files]
    run(command, dict(os.environ), tmp_path, "mypy --strict on README.md's python blocks")


@pytest.mark.parametrize("block", SH, ids=[b.id for b in SH])
def test_sh_block(block: Block, settings: tuple[FakeRegistry, dict[str, str]]) -> None:
    what = f"README.md's sh block on line {block.line} ({block.heading})"
    for word in re.findall(r"[\w./\[\]-]*bindings/[\w./\[\]-]*", block.code):
        path = ROOT / re.sub(r"\[.*\]$", "", word)
        assert path.exists(), f"{what} names {word}, and {path} does not exist"
        extra = re.search(r"\[(\w+)\]$", word)
        if extra:
            pyproject = (path / "pyproject.toml").read_text()
            assert re.search(rf"^{extra.group(1)} = \[", pyproject, re.MULTILINE), f"{what}: no extra {extra.group(1)}"
    first = block.code.strip().splitlines()[0]
    for start, reason in SH_NOT_RUN.items():
        if first.startswith(start):
            pytest.skip(f"line {block.line}: not run: {reason}")
    _, env = settings
    # The examples' block describes both ways: the settings exported (from icr-app mock), and none.
    for environment in (env, without_settings(env)):
        run(["bash", "-euo", "pipefail", "-c", block.code], environment, ROOT, what)


def test_every_example_is_in_the_readme() -> None:
    text = README.read_text()
    finite = "".join(b.code for b in SH)
    for example in sorted(EXAMPLES.glob("*.py")):
        assert example.name in text, f"README.md does not mention examples/{example.name}"
        if example.name != "webhook_server.py":  # serves until Ctrl-C with settings: run below
            assert f"examples/{example.name}" in finite, f"no sh block of README.md runs examples/{example.name}"


def test_webhook_server_demo() -> None:
    """Without settings: a FakeRegistry of its own, two deliveries to itself, 202 and 403."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICR_")}
    out = run([sys.executable, str(EXAMPLES / "webhook_server.py")], env, PACKAGE, "examples/webhook_server.py")
    assert "answered 202" in out and "answered 403" in out, out


def test_webhook_server_serves(settings: tuple[FakeRegistry, dict[str, str]]) -> None:
    """With the settings: serves until SIGINT, verifies, acts as the installation, refuses a
    delivery signed with another secret."""
    registry, env = settings
    env["ICR_WEBHOOK_SECRET"] = secret = "a webhook secret"
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "webhook_server.py"), "--port", "0"],
        env=env,
        cwd=PACKAGE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/webhooks", first)
        assert url, f"no URL in {first!r}"
        installation_id = registry.installation_ids[0]
        body, signature = registry.webhook_delivery(secret, "installed", installation_id)
        assert httpx.post(url.group(0), content=body, headers={"x-icr-signature-256": signature}, timeout=TIMEOUT).status_code == 202
        assert registry.mint_count(installation_id) == 1  # it acted as the installation
        body, signature = registry.webhook_delivery("another secret", "installed", installation_id)
        assert httpx.post(url.group(0), content=body, headers={"x-icr-signature-256": signature}, timeout=TIMEOUT).status_code == 403
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=TIMEOUT)
        assert server.returncode == 0, f"{first}{out}\n{err}"
        assert "verified: installed" in out and "refused:" in out and "stopped" in out, f"{first}{out}"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_a_broken_block_fails(settings: tuple[FakeRegistry, dict[str, str]], tmp_path: Path) -> None:
    """The runner is not lenient: an undefined name fails a block."""
    _, env = settings
    broken = PYTHON[0].code + "print(undefined_name)\n"
    (tmp_path / "broken.py").write_text(broken)
    start = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match="NameError"):
        run([sys.executable, "broken.py"], env, tmp_path, "the quick start with an undefined name")
    assert time.monotonic() - start < TIMEOUT
