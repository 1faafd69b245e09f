"""The official Node clients (openai-node and @anthropic-ai/sdk, the exact versions of package-lock.json in this
folder), run unmodified by `node` against a gateway on 127.0.0.1: one process per test, each call's result read
back as a JSON line (steps.mjs says what a line holds).

The packages are installed by `npm ci` here, once, when node_modules does not hold what the lock file pins; only
that step uses the npm registry. Without node or npm the tests that need them fail, saying what to install."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
INSTALL_HINT = "`apt-get install nodejs npm` (.ci/run does)"
# Each call of a script answers well within this; a hung one fails its test before pytest's own timeout.
DEADLINE = 30.0


def credits(micros: int) -> Decimal:
    """Micro-credits as the figure an answer writes (`usage.cost`, `credits_remaining`); results parse numbers
    with fractions as Decimal, so the two compare exactly."""
    return Decimal(micros) / 10**6


def step(call: str, *args: object) -> dict[str, object]:
    """One call for a script: the SDK method's path on the client (`chat.completions.create`) and its arguments."""
    return {"call": call, "args": list(args)}


def ref(index: int, field: str) -> dict[str, str]:
    """A field of an earlier call's result, as an argument: `ref(0, "data.id")`."""
    return {"$ref": f"{index}.{field}"}


def _installed() -> bool:
    """Whether node_modules holds exactly the packages package-lock.json pins (npm's own record of them)."""
    try:
        installed = json.loads((HERE / "node_modules" / ".package-lock.json").read_text())
    except FileNotFoundError:
        return False
    pinned = json.loads((HERE / "package-lock.json").read_text())
    return bool(installed["packages"] == {name: entry for name, entry in pinned["packages"].items() if name})


def install() -> str:
    """The path of `node`, after `npm ci` if the pinned packages are not installed yet."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise AssertionError(f"the Node client tests need node and npm on PATH: {INSTALL_HINT}")
    if not _installed():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, capture_output=True, text=True
        )
        assert done.returncode == 0, f"npm ci in {HERE} failed:\n{done.stderr}"
    return node


@dataclass(frozen=True)
class NodeClients:
    """Runs the SDK scripts of this folder with `node`; built by the `node_clients` fixture."""

    node: str

    async def run(self, script: str, base_url: str, key: str, *steps: dict[str, object], **env: str) -> list[Any]:
        """Run `script` (`openai.mjs`, `anthropic.mjs`) with the steps, in its own process, and return each
        call's result; `env` adds the script's own variables (`GW_AUTH="authToken"`)."""
        variables = {"PATH": os.environ["PATH"], "GW_BASE_URL": base_url, "GW_KEY": key, "GW_STEPS": json.dumps(steps)}
        process = await asyncio.create_subprocess_exec(
            self.node,
            str(HERE / script),
            cwd=HERE,
            env={**variables, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), DEADLINE)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(f"node {script} did not finish within {DEADLINE} s") from None
        assert process.returncode == 0, f"node {script} exited {process.returncode}:\n{stderr.decode()}"
        return [json.loads(line, parse_float=Decimal) for line in stdout.decode().splitlines()]
