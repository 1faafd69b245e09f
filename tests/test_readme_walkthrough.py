"""The README's walkthrough, run as a newcomer would paste it: the mock on a port of its own named by one
variable, the CLI, the OpenAI client, a webhook to a receiver on this machine, and every configuration variable the
README shows exported from bash."""

from __future__ import annotations

import http.server
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import pytest

from gateway.mock import claude as mock_claude
from gateway.redis_server import free_port
from tests.processes import gateway_env, wait_http

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SHIPPED_CONFIG = ROOT / "config" / "gateway.toml"
GATEWAY = str(Path(sys.executable).with_name("gateway"))


def _shell_lines(containing: str) -> list[str]:
    """The lines of the README's ```sh block that holds `containing`."""
    [block] = [b for b in re.findall(r"```sh\n(.*?)```", README, flags=re.S) if containing in b]
    return [line.split("  #")[0].strip() for line in block.strip().splitlines()]


def _python_block(containing: str) -> str:
    [block] = [b for b in re.findall(r"```python\n(.*?)```", README, flags=re.S) if containing in b]
    return block


@contextmanager
def _started(line: str, env: dict[str, str], cwd: Path) -> Iterator[None]:
    """A README line ending in `&`, run by bash in its own process group; stopped at the end."""
    command = line.removesuffix("&").strip().replace(".venv/bin/gateway", GATEWAY)
    process = subprocess.Popen(["bash", "-c", command], env=env, cwd=cwd, start_new_session=True)
    try:
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _cli(env: dict[str, str], cwd: Path, line: str) -> dict[str, object]:
    done = subprocess.run(
        ["bash", "-c", line.replace(".venv/bin/gateway", GATEWAY)], env=env, cwd=cwd, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_the_walkthrough_with_the_mock_on_another_port(tmp_path: Path, redis_url: str) -> None:
    mock_port, port = free_port(), free_port()
    # The shell as a newcomer has it: the shipped config, the gateway's own port free (8080 may not be here).
    env = gateway_env(
        GATEWAY_CONFIG=str(SHIPPED_CONFIG),
        GATEWAY_PORT=str(port),
        REDIS_URL=redis_url,
        GATEWAY__SERVER__SPOOL_DIR=str(tmp_path / "spool"),
    )
    mock_line, serve_line = (line.replace("9000", str(mock_port)) for line in _shell_lines("__MOCK__BASE_URL"))
    with _started(mock_line, env, tmp_path), _started(serve_line, env, tmp_path):
        wait_http(f"http://127.0.0.1:{mock_port}/v1/models")
        wait_http(f"http://127.0.0.1:{port}/readyz")
        lines = _shell_lines("accounts create")
        [create_account] = [line for line in lines if "accounts create" in line]
        [create_key] = [line for line in lines if "keys create" in line]
        account = _cli(env, tmp_path, create_account)
        key = _cli(env, tmp_path, create_key.replace("acct_...", str(account["id"])))["key"]
        snippet = _python_block("OpenAI(base_url").replace("8080", str(port)).replace("sk-gw-...", str(key))
        printed = io.StringIO()
        with redirect_stdout(printed):
            exec(snippet, {})  # the README's own lines, as a reader would paste them
        claude = _python_block("Anthropic(base_url").replace("8080", str(port)).replace("sk-gw-...", str(key))
        with redirect_stdout(printed):
            exec(claude, {})
    output = printed.getvalue()
    *others, last, claude_output = output.strip().splitlines()
    assert "prompt_tokens=9" in last and "completion_tokens=" in last, output
    # The embeddings batch: "Hello!" (2 tokens) and "How are you?" (4) at 1,500 credits per million.
    assert others[0] == "6 0.009", output
    # The legacy completion: "Say this is a test" (5 tokens) at 1,500, 8 tokens of reply at 6,000.
    assert "prompt_tokens=5" in others[1] and others[1].endswith(" 0.0555"), output
    # cost and the balance after it: 9 prompt tokens at 1,500 and the mock's reply at 6,000 credits per million.
    cost, remaining = last.split()[-2:]
    spent = float(cost) + sum(float(line.split()[-1]) for line in others)
    assert float(cost) > 0 and float(remaining) == pytest.approx(1000 - spent)
    # mock-claude: the mock's own count of the input at 3,000 and its 16 words at 15,000 credits per million.
    body = {"messages": [{"role": "user", "content": "Hi!"}]}
    input_tokens = mock_claude.count_input(body).tokens
    assert claude_output.split() == [str(input_tokens), "16", repr((input_tokens * 3000 + 16 * 15000) / 10**6)]


class _Receiver(http.server.BaseHTTPRequestHandler):
    got: list[bytes] = []

    def do_POST(self) -> None:
        self.got.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_webhooks_reach_a_receiver_on_this_machine_as_the_readme_says(tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    env = gateway_env(GATEWAY_CONFIG=str(SHIPPED_CONFIG), GATEWAY_PORT=str(port), REDIS_URL=redis_url)
    [serve_line] = _shell_lines("ALLOW_PRIVATE_TARGETS=true")
    try:
        with _started(serve_line, env, tmp_path):
            wait_http(f"http://127.0.0.1:{port}/readyz")
            account = _cli(env, tmp_path, ".venv/bin/gateway accounts create --name hooks --credits 1")
            key = _cli(env, tmp_path, f".venv/bin/gateway keys create --account {account['id']} --name hooks")["key"]
            target = f"http://127.0.0.1:{receiver.server_port}/hook"
            hook = _post(port, "/v1/webhooks", str(key), {"url": target, "events": ["credits.exhausted"]})
            assert hook["url"] == target
            assert str(_post(port, f"/v1/webhooks/{hook['id']}/test", str(key), {})["id"]).startswith("evt_")
            assert _wait(lambda: bool(_Receiver.got), 30), "the receiver never got the test event"
            assert b"webhook.test" in _Receiver.got[0]
    finally:
        receiver.shutdown()
        receiver.server_close()


def _post(port: int, path: str, key: str, body: object) -> dict[str, object]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, object] = json.loads(response.read())
        return answer


def _wait(condition: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


EXAMPLES = re.findall(r"`(GATEWAY__\S+?=[^`\s]+)`", README)
SHOW = "from gateway.config import load_settings; print(repr(load_settings()))"


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_variable_the_readme_shows_can_be_exported_from_bash_and_takes_effect(example: str) -> None:
    env = gateway_env(GATEWAY_CONFIG=str(SHIPPED_CONFIG))
    plain = subprocess.run([sys.executable, "-c", SHOW], env=env, capture_output=True, text=True, timeout=60)
    exported = subprocess.run(
        ["bash", "-c", f'export {example} && exec "{sys.executable}" -c "{SHOW}"'],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert exported.returncode == 0, exported.stderr  # bash: "not a valid identifier" for a name with a hyphen
    assert exported.stdout != plain.stdout  # the setting changed
