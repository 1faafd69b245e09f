"""Planted mutations of the money scripts (gateway/billing/lua/*.lua), which Python mutation tools cannot read.

Each mutant is one realistic bug: a search string that must occur exactly once in its script, and what it
becomes. `run` applies each mutant to a private copy of the tree (never to the files it was copied from), runs
that script's tests against the copy, and records whether they caught it:

    results = run(tree, workdir, jobs=2)   # tree: a checkout holding gateway/, tests/, pyproject.toml

killed: the tests failed; survived: they passed; timeout: they did not finish in time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from queue import Queue

LUA_DIR = Path("gateway/billing/lua")
# The slow tests of these folders prove other things (bounded memory); each costs seconds per mutant.
DESELECT = "not 100k_records"
PROXY = ["tests/proxy/test_handlers.py", "tests/proxy/test_streams.py", "tests/proxy/test_concurrency.py"]
PROXY += ["tests/proxy/test_boundaries.py", "tests/proxy/test_metering.py"]
ALERTS = ["tests/webhooks/test_crossings.py"]  # usage alerts are detected inside the money scripts
# Each script's tests; paths missing from the tree measured (an older commit) are left out.
TESTS = {
    "prelude.lua": ["tests/billing", *PROXY, "tests/usage", *ALERTS],
    "reserve.lua": ["tests/billing", *PROXY, *ALERTS],
    "settle.lua": ["tests/billing", *PROXY, "tests/usage", *ALERTS],
    "grant.lua": ["tests/billing", "tests/admin", *ALERTS],
}
TWO_53 = "9007199254740992"


@dataclass(frozen=True)
class Mutant:
    name: str
    script: str
    search: str
    replace: str


MUTANTS = [
    # prelude.lua: the number checks and the hold record
    Mutant("whole_accepts_2_53", "prelude.lua", f"n >= {TWO_53}", f"n > {TWO_53}"),
    Mutant("whole_accepts_negatives", "prelude.lua", "n == nil or n < 0 or", "n == nil or"),
    Mutant("whole_accepts_fractions", "prelude.lua", " or n % 1 ~= 0 then", " then"),
    Mutant(
        "hold_encode_swaps_amount_and_deadline",
        "prelude.lua",
        "return amount .. ':' .. deadline ..",
        "return deadline .. ':' .. amount ..",
    ),
    Mutant(
        "hold_decode_amount_from_deadline_field",
        "prelude.lua",
        "return tonumber(string.sub(text, 1, first - 1)), tonumber(string.sub(text, first + 1, second - 1)),",
        "return tonumber(string.sub(text, first + 1, second - 1)), tonumber(string.sub(text, 1, first - 1)),",
    ),
    Mutant(
        "hold_decode_key_id_keeps_its_colon",
        "prelude.lua",
        "string.sub(text, second + 1, third - 1)",
        "string.sub(text, second + 1, third)",
    ),
    Mutant(
        "hold_decode_model_cut_at_next_colon",
        "prelude.lua",
        "string.sub(text, third + 1)\n",
        "string.sub(text, third + 1, (string.find(text, ':', third + 1, true) or 0) - 1)\n",
    ),
    Mutant(
        "alert_fires_only_past_the_threshold",
        "prelude.lua",
        "return 100 * (used - percent * whole) >= percent * rest",
        "return 100 * (used - percent * whole) > percent * rest",
    ),
    Mutant(
        "a_late_replay_restarts_the_period",
        "prelude.lua",
        "if current and current > period then",
        "if current and current < period then",
    ),
    # reserve.lua
    Mutant(
        "reserve_refuses_an_exactly_sufficient_balance",
        "reserve.lua",
        "if balance < hold then",
        "if balance <= hold then",
    ),
    Mutant(
        "reserve_partial_needs_more_than_least", "reserve.lua", "if balance >= least then", "if balance > least then"
    ),
    Mutant(
        "reserve_skips_the_settled_check",
        "reserve.lua",
        "if redis.call('ZSCORE', KEYS[4], ARGV[2]) then",
        "if false then",
    ),
    Mutant(
        "reserve_skips_the_held_check",
        "reserve.lua",
        "if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 then",
        "if false then",
    ),
    Mutant(
        "reserve_does_not_count_what_it_holds", "reserve.lua", "redis.call('HINCRBY', KEYS[1], 'held', hold)\n", "\n"
    ),
    Mutant("reserve_debits_the_least_hold", "reserve.lua", "'balance', 0 - hold)", "'balance', 0 - least)"),
    Mutant(
        "reserve_records_the_least_hold", "reserve.lua", "hold_encode(ARGV[3], ARGV[5]", "hold_encode(ARGV[4], ARGV[5]"
    ),
    Mutant("reserve_records_no_deadline", "reserve.lua", "hold_encode(ARGV[3], ARGV[5]", "hold_encode(ARGV[3], 0"),
    Mutant(
        "reserve_reports_the_balance_before_the_hold",
        "reserve.lua",
        "return {1, api_key_id, after",
        "return {1, api_key_id, balance",
    ),
    Mutant(
        "reserve_lets_a_missing_account_through",
        "reserve.lua",
        "local balance = tonumber(redis.call('HGET', KEYS[1], 'balance'))\nif not balance then",
        "local balance = tonumber(redis.call('HGET', KEYS[1], 'balance')) or 0\nif not balance then",
    ),
    # settle.lua
    Mutant("settle_releases_charge_minus_hold", "settle.lua", "'balance', hold - charge)", "'balance', charge - hold)"),
    Mutant("settle_charge_not_capped", "settle.lua", "if charge > balance + hold then", "if false then"),
    Mutant("settle_cap_ignores_the_hold", "settle.lua", "  charge = balance + hold\n", "  charge = balance\n"),
    Mutant(
        "settle_cap_compares_with_balance_only",
        "settle.lua",
        "if charge > balance + hold then",
        "if charge > balance then",
    ),
    Mutant("settle_cap_at_ge", "settle.lua", "if charge > balance + hold then", "if charge >= balance + hold then"),
    Mutant(
        "settle_day_totals_add_the_uncapped_cost",
        "settle.lua",
        "redis.call('HINCRBY', KEYS[3], prefix .. 'credits', charge)",
        "redis.call('HINCRBY', KEYS[3], prefix .. 'credits', cost)",
    ),
    Mutant(
        "settle_hour_totals_add_the_uncapped_cost",
        "settle.lua",
        "redis.call('HINCRBY', KEYS[4], api .. 'credits', charge)",
        "redis.call('HINCRBY', KEYS[4], api .. 'credits', cost)",
    ),
    Mutant(
        "settle_record_keeps_the_uncapped_cost", "settle.lua", "'credits_micros', charge,", "'credits_micros', cost,"
    ),
    Mutant(
        "settle_reply_reports_the_uncapped_cost", "settle.lua", "return {1, after, charge", "return {1, after, cost"
    ),
    Mutant("settle_skips_the_errors_counter", "settle.lua", "if ARGV[9] == '1' then", "if false then"),
    Mutant("settle_counts_every_request_as_an_error", "settle.lua", "if ARGV[9] == '1' then", "if ARGV[9] then"),
    Mutant("settle_keeps_the_hold", "settle.lua", "redis.call('HDEL', KEYS[2], ARGV[1])\n", "\n"),
    Mutant(
        "settle_takes_the_deadline_as_the_hold",
        "settle.lua",
        "local hold, _, api_key_id = hold_decode(held)",
        "local _, hold, api_key_id = hold_decode(held)",
    ),
    Mutant(
        "settle_release_charges_instead",
        "settle.lua",
        "if mode == 'release' then\n  return",
        "if mode == 'released' then\n  return",
    ),
    Mutant(
        "settle_release_returns_nothing",
        "settle.lua",
        "return {1, redis.call('HINCRBY', KEYS[1], 'balance', hold)",
        "return {1, tonumber(redis.call('HGET', KEYS[1], 'balance'))",
    ),
    Mutant("settle_forgets_released_ids", "settle.lua", "if not held or mode == 'release' then", "if not held then"),
    Mutant("settle_remembers_no_ids", "settle.lua", "redis.call('ZADD', KEYS[7], 'NX', now, ARGV[1])\n", "\n"),
    Mutant(
        "settle_hour_prompt_tokens_are_completion_tokens",
        "settle.lua",
        "redis.call('HINCRBY', KEYS[4], api .. 'prompt_tokens', prompt)",
        "redis.call('HINCRBY', KEYS[4], api .. 'prompt_tokens', completion)",
    ),
    Mutant("settle_key_totals_under_the_model", "settle.lua", "'k:' .. api_key_id .. ':'", "'k:' .. ARGV[5] .. ':'"),
    Mutant(
        "settle_keeps_every_api_under_chat",
        "settle.lua",
        "local api = 'a:' .. ARGV[15] .. ':'",
        "local api = 'a:chat.completions:'",
    ),
    Mutant(
        "settle_accepts_any_api_name",
        "settle.lua",
        " or not string.match(ARGV[15], '^[a-z][a-z.]*$') then",
        " then",
    ),
    Mutant("settle_hour_totals_never_expire", "settle.lua", "redis.call('EXPIRE', KEYS[4], ARGV[7])\n", "\n"),
    Mutant("settle_record_ids_collide_in_one_ms", "settle.lua", "if last_ms >= now then", "if last_ms > now then"),
    Mutant(
        "settle_key_last_used_not_written", "settle.lua", "redis.call('HSET', KEYS[5], api_key_id, ARGV[6])\n", "\n"
    ),
    # grant.lua
    Mutant(
        "grant_skips_the_idempotency_check",
        "grant.lua",
        "if redis.call('ZSCORE', KEYS[3], ARGV[4]) then",
        "if false then",
    ),
    Mutant(
        "grant_refuses_taking_back_to_zero",
        "grant.lua",
        "if balance + amount < 0 then",
        "if balance + amount <= 0 then",
    ),
    Mutant(
        "grant_allows_2_53",
        "grant.lua",
        f"if balance + amount >= {TWO_53} then",
        f"if balance + amount > {TWO_53} then",
    ),
    Mutant("grant_id_not_recorded", "grant.lua", "redis.call('ZADD', KEYS[3], now, ARGV[4])\n", "\n"),
    Mutant("grant_skips_the_granted_total", "grant.lua", "redis.call('HINCRBY', KEYS[1], 'granted', ARGV[1])\n", "\n"),
    Mutant("grant_accepts_zero", "grant.lua", " or amount == 0 then", " then"),
]


@dataclass(frozen=True)
class Result:
    name: str
    script: str
    line: int  # where the mutation starts in the original script (1-based)
    search: str
    replace: str
    status: str  # killed, survived, timeout, not applicable
    seconds: float


def line_of(source: str, search: str) -> int:
    return source[: source.index(search)].count("\n") + 1 if search in source else 0


def copy_tree(source: Path, target: Path) -> None:
    """gateway/, tests/, config/ (the shipped config, which some tests load) and pyproject.toml of `source` into a
    fresh `target`, without caches or the Node client tests' packages."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis", "node_modules")
    for name in ("gateway", "tests", "config"):
        if (source / name).exists():  # an old checkout may have no config/
            shutil.copytree(source / name, target / name, ignore=ignore)
    shutil.copy2(source / "pyproject.toml", target / "pyproject.toml")


def pytest_command(tree: Path, script: str) -> list[str]:
    paths = [path for path in TESTS[script] if (tree / path).exists()]
    return [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", "-o", "timeout=30", *paths, "-k", DESELECT]


def run_tests(tree: Path, script: str, timeout_s: float) -> tuple[str, float]:
    """Run `script`'s tests in `tree`: "killed" (they failed), "survived" (passed) or "timeout"."""
    env = {k: v for k, v in os.environ.items() if k not in ("GATEWAY_TEST_REDIS_URL", "PYTHONPATH")}
    env["PYTHONPATH"] = str(tree)  # the copy's gateway, never the checkout's
    started = time.monotonic()
    # A session of its own: on timeout the whole group (pytest and the redis-server it started) is ended.
    process = subprocess.Popen(
        pytest_command(tree, script),
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return "timeout", time.monotonic() - started
    elapsed = time.monotonic() - started
    if process.returncode == 0:
        return "survived", elapsed
    if process.returncode in (1, 3):  # tests failed, or an error inside pytest: the mutant was noticed
        return "killed", elapsed
    raise RuntimeError(f"pytest could not run ({process.returncode}):\n{output.decode(errors='replace')[-3000:]}")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Worker:
    tree: Path  # this worker's own copy; mutated one file at a time and restored after each mutant
    pristine: dict[str, str]  # script name -> original text

    def check_imports_its_own_copy(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PYTHONPATH"] = str(self.tree)
        code = "import gateway.billing.scripts as s; print(s.__file__)"
        found = subprocess.run([sys.executable, "-c", code], cwd=self.tree, env=env, capture_output=True, text=True)
        if not Path(found.stdout.strip()).is_relative_to(self.tree):
            raise RuntimeError(f"the tests would import {found.stdout.strip()!r}, not the copy in {self.tree}")

    def apply(self, mutant: Mutant, timeout_s: float) -> Result:
        original = self.pristine[mutant.script]
        line = line_of(original, mutant.search)
        if original.count(mutant.search) != 1:
            return Result(mutant.name, mutant.script, line, mutant.search, mutant.replace, "not applicable", 0.0)
        path = self.tree / LUA_DIR / mutant.script
        try:
            path.write_text(original.replace(mutant.search, mutant.replace), encoding="utf-8")
            status, seconds = run_tests(self.tree, mutant.script, timeout_s)
        finally:
            path.write_text(original, encoding="utf-8")
        if path.read_text(encoding="utf-8") != original:
            raise RuntimeError(f"{path} was not restored")
        return Result(mutant.name, mutant.script, line, mutant.search, mutant.replace, status, seconds)


def run(tree: Path, workdir: Path, *, jobs: int = 2, mutants: list[Mutant] | None = None) -> list[Result]:
    """Every mutant against its script's tests, `jobs` at a time, each worker in its own copy of `tree`."""
    mutants = MUTANTS if mutants is None else mutants
    before = {name: _digest(tree / LUA_DIR / name) for name in TESTS}
    pristine = {name: (tree / LUA_DIR / name).read_text(encoding="utf-8") for name in TESTS}
    workers: Queue[Worker] = Queue()
    for index in range(jobs):
        copy = workdir / f"lua-{index}"
        copy_tree(tree, copy)
        worker = Worker(copy, pristine)
        worker.check_imports_its_own_copy()
        workers.put(worker)
    # The unmutated scripts must pass: it also gives each script's time, from which the timeout follows.
    baseline: dict[str, float] = {}
    probe = workers.get()
    for script in TESTS:
        status, seconds = run_tests(probe.tree, script, timeout_s=600)
        if status != "survived":
            raise RuntimeError(f"the tests of {script} fail on the unmutated tree ({status})")
        baseline[script] = seconds
        print(f"  lua baseline {script}: {seconds:.1f} s", flush=True)
    workers.put(probe)

    def one(mutant: Mutant) -> Result:
        worker = workers.get()
        try:
            result = worker.apply(mutant, timeout_s=baseline[mutant.script] * 3 + 30)
        finally:
            workers.put(worker)
        print(f"  lua {result.status:>9}  {mutant.script}:{result.line}  {mutant.name}", flush=True)
        return result

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(one, mutants))
    for worker in list(workers.queue):
        for name, text in pristine.items():
            if (worker.tree / LUA_DIR / name).read_text(encoding="utf-8") != text:
                raise RuntimeError(f"{worker.tree / LUA_DIR / name} was left mutated")
    if {name: _digest(tree / LUA_DIR / name) for name in TESTS} != before:
        # Nothing here writes to `tree`: someone edited it meanwhile. The results are for the copy taken first.
        print(f"  note: the scripts in {tree} changed during the run; results are for the copies taken at its start")
    return results


if __name__ == "__main__":
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("names", nargs="*", help="only these mutants")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    with tempfile.TemporaryDirectory(prefix="lua-mutants-") as scratch:
        for result in run(args.tree.resolve(), Path(scratch), jobs=args.jobs, mutants=chosen):
            print(result.status, result.script, result.line, result.name)
