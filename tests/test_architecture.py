"""The layout stays true without review: every import points the way the packages' docstrings say.

Dependencies point down: handlers use services; services use `billing/` and `tokens/`; those two use nothing
else of the gateway. The tables below are the rule. Each package's `__init__.py` docstring has the sentence
that starts "May import:" written from them (`may_import` writes it; a test fails, giving the sentence, when
the two differ), and gateway/__init__.py places every top-level module in its role. Services are built once, at
start-up, in a cleanup context (`services_built_per_call` finds one built per call).
"""

from __future__ import annotations

import ast
import re
import shutil
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import gateway

GATEWAY_DIR = Path(gateway.__file__).parent
TESTS_DIR = Path(__file__).parent

# Top-level modules, by role. Anything not named here, or in a package below, fails `test_every_module_has_a_place`.
SHARED = {
    "__init__",
    "bill_headers",
    "bodies",
    "config",
    "config_checks",
    "errors",
    "metrics",
    "numbers",
    "redis_server",
    "request_ids",
}  # what the layers above billing and tokens may use
STATE = {"app_state", "storage"}  # the app's shared resources: for handlers and assembly only
ASSEMBLY = {
    "app",
    "cli",
    "__main__",
    "ops",
    "serving",
    "http_server",
    "access_log",
}  # wires everything together, or describes it; may import anything
PACKAGES = {"billing", "tokens", "admin", "proxy", "usage", "mock", "webhooks", "dashboard", "insights", "openapi"}
ASSEMBLY_PACKAGES = {"openapi"}  # describes every route: it reads every package's limits, like the assembly

# What each part may import besides itself: whole parts, or single modules as "package.module".
ALLOWED: dict[str, set[str]] = {
    "billing": set(),
    "tokens": set(),
    "shared": {"billing"},
    "admin": {"billing", "shared"},
    # The proxy takes each request's fingerprint and signals as it goes (the usage insights' hot path).
    "proxy": {
        "billing",
        "tokens",
        "shared",
        "admin.accounts",
        "admin.auth",
        "insights.fingerprints",
        "insights.signals",
    },
    "usage": {"billing", "shared", "admin.accounts", "admin.auth"},
    "webhooks": {"billing", "shared", "admin.accounts", "admin.auth"},
    "dashboard": {"billing", "shared", "admin.accounts", "admin.auth", "usage.ranges", "usage.reader", "usage.views"},
    "insights": {"billing", "tokens", "shared", "admin.auth", "usage.ranges"},
    "mock": set(),
    # The app state declares a key for each service handlers read, so it names their classes.
    "state": {
        "billing",
        "tokens",
        "shared",
        "admin.accounts",
        "admin.service",
        "insights.reader",
        "proxy.answers",
        "proxy.background",
        "proxy.conversation_store",
        "proxy.metering",
        "usage.reader",
        "webhooks.service",
    },
    "assembly": {"billing", "tokens", "shared", "state", *PACKAGES},
}
# Modules that serve HTTP and read the app state. The rest of their package are services, which import
# neither these nor the app state.
HANDLERS = {
    "admin.handlers",
    "proxy.handlers",
    "proxy.exchange",
    "proxy.stored",
    "proxy.conversations",
    "usage.handlers",
    "webhooks.handlers",
    "insights.handlers",
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, "proxy.handlers" (relative to gateway)
    target: str  # the imported module, "billing.ledger"
    line: int


def module_name(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts)


def is_module(root: Path, dotted: str) -> bool:
    """Whether `gateway.<dotted>` is a module or package of the tree at `root`."""
    path = root.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def resolve(root: Path, dotted: str) -> str:
    """The module file `gateway.<dotted>` runs: a package stands for its `__init__`."""
    return f"{dotted}.__init__" if (root.joinpath(*dotted.split(".")) / "__init__.py").exists() else dotted


def imported_names(node: ast.AST, root: Path) -> list[str]:
    """What an import statement imports, relative to gateway ("" for gateway itself); other imports are left out."""
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        # `from gateway.usage import views` imports the module gateway.usage.views, not just the package.
        names = [f"{node.module}.{alias.name}" for alias in node.names]
        names = [name if is_module(root, name.partition(".")[2]) else node.module for name in names]
    return [name.partition(".")[2] for name in names if name == "gateway" or name.startswith("gateway.")]


def gateway_imports(root: Path) -> Iterator[Import]:
    """Every import of a gateway module in the tree at `root`, wherever it stands (in functions too)."""
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for name in imported_names(node, root):
                yield Import(module, resolve(root, name) if name else "__init__", getattr(node, "lineno", 0))


def part_of(module: str) -> str:
    """The part a module belongs to: its package, or the role of a top-level module."""
    head, _, rest = module.partition(".")
    if rest:
        if head in ASSEMBLY_PACKAGES:
            return "assembly"
        if head not in PACKAGES:
            raise LookupError(f"gateway/{head}/ is a package with no rule in tests/test_architecture.py")
        return head
    for part, members in (("shared", SHARED), ("state", STATE), ("assembly", ASSEMBLY)):
        if head in members:
            return part
    raise LookupError(f"gateway/{head}.py has no place in tests/test_architecture.py")


def violation(edge: Import) -> str | None:
    """Why this import breaks the direction of dependencies, or None when it is allowed."""
    source, target = part_of(edge.module), part_of(edge.target)
    target_module = edge.target.removesuffix(".__init__")
    where = f"gateway/{edge.module.replace('.', '/')}.py:{edge.line} imports gateway.{target_module}"
    if edge.target in HANDLERS and source != target and source != "assembly":
        return f"{where}: a package's handlers are imported only within it and by the app assembly"
    if edge.target in HANDLERS and edge.module not in HANDLERS and source == target:
        return f"{where}: services never import handlers"
    if target == "state" and source not in ("state", "assembly"):
        if edge.module in HANDLERS:
            return None
        return f"{where}: services never read the app state; take what they need as arguments"
    if source == target or target in ALLOWED[source] or target_module in ALLOWED[source]:
        return None
    allowed = ", ".join(sorted(ALLOWED[source])) or "nothing else of the gateway"
    return f"{where}: {source} may import only {allowed}"


def violations(root: Path) -> list[str]:
    return [reason for edge in gateway_imports(root) if (reason := violation(edge)) is not None]


def test_every_module_has_a_place() -> None:
    for path in GATEWAY_DIR.rglob("*.py"):
        part_of(module_name(path, GATEWAY_DIR))


def test_imports_point_the_stated_way() -> None:
    assert violations(GATEWAY_DIR) == []


def class_definitions(root: Path) -> dict[str, ast.ClassDef]:
    return {
        node.name: node
        for path in sorted(root.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
    }


def takes_redis(definition: ast.ClassDef) -> bool:
    """Whether the class's constructor takes a RedisClient."""
    for item in definition.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            arguments = item.args.args + item.args.kwonlyargs
            return any(a.annotation is not None and "RedisClient" in ast.unparse(a.annotation) for a in arguments)
    return False


def app_key_types(root: Path) -> set[str]:
    """The classes app_state.py declares keys for: `web.AppKey("name", Class)` or `web.AppKey[Class]`."""
    names = set()
    for node in ast.walk(ast.parse((root / "app_state.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("AppKey"):
            names |= {argument.id for argument in node.args[1:] if isinstance(argument, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.annotation, ast.Subscript):
            if isinstance(node.annotation.slice, ast.Name):
                names.add(node.annotation.slice.id)
    return names


def is_startup(name: str) -> bool:
    """A function that runs once per app or per service: a cleanup context, or a service's constructor."""
    return name.endswith("_ctx") or name == "__init__"


def constructions(
    tree: ast.AST, names: set[str], within: tuple[str, ...] = ()
) -> Iterator[tuple[str, int, tuple[str, ...]]]:
    """Each call of a class in `names`: (class, line, the functions it is in, outermost first)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from constructions(node, names, (*within, node.name))
            continue
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names:
            yield node.func.id, node.lineno, within
        yield from constructions(node, names, within)


def service_classes(root: Path) -> set[str]:
    """What start-up builds once: the classes the app state declares keys for (but `Settings`, which `config`
    reads from the file), the classes a cleanup context (`*_ctx`) builds, and every class whose constructor takes
    a RedisClient."""
    defined = class_definitions(root)
    built = {
        name
        for path in root.rglob("*.py")
        for name, _, within in constructions(ast.parse(path.read_text(encoding="utf-8")), set(defined))
        if any(function.endswith("_ctx") for function in within)
    }
    keyed = app_key_types(root) & set(defined) - {"Settings"}
    return keyed | built | {name for name, definition in defined.items() if takes_redis(definition)}


def services_built_per_call(root: Path) -> list[str]:
    """Services built where they would be built again on every call. The state and the assembly build them
    (once per app, or once per CLI command); anywhere else only a cleanup context or a service's `__init__` may."""
    services = service_classes(root)
    found = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        if part_of(module) in ("state", "assembly"):
            continue
        for name, line, within in constructions(ast.parse(path.read_text(encoding="utf-8")), services):
            if not any(is_startup(function) for function in within):
                where = within[-1] if within else "the module"
                found.append(
                    f"gateway/{path.relative_to(root)}:{line} builds {name} in {where}: build it once "
                    "at start-up, under an app key, in a cleanup context of its package"
                )
    return found


def test_services_are_built_once_at_start_up() -> None:
    assert services_built_per_call(GATEWAY_DIR) == []


@pytest.mark.parametrize(
    ("module", "call", "service"),
    [
        ("usage/handlers.py", "UsageReader(request.app[REDIS])", "UsageReader"),
        ("admin/handlers.py", "AdminService(request.app[ACCOUNTS], request.app[LEDGER])", "AdminService"),
        ("webhooks/handlers.py", "WebhookService(store, outbox, limits, clock=time.time)", "WebhookService"),
        ("webhooks/handlers.py", "Outbox(request.app[REDIS], clock=WALL_CLOCK)", "Outbox"),
        # a service module handlers call per request is a request's code too
        ("insights/report.py", "InsightsReader(redis)", "InsightsReader"),
    ],
)
def test_a_service_built_per_request_is_caught(tree_copy: Path, module: str, call: str, service: str) -> None:
    assert services_built_per_call(tree_copy) == []
    path = tree_copy / module
    path.write_text(
        path.read_text() + f"\n\nasync def _per_request(request, redis, store, outbox, limits):\n    {call}\n"
    )
    found = services_built_per_call(tree_copy)
    assert (
        len(found) == 1
        and found[0].startswith(f"gateway/{module}:")
        and f"builds {service} in _per_request" in found[0]
    ), found


def and_list(items: list[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def may_import(package: str) -> str:
    """The sentence a package's docstring states its imports in, written from ALLOWED and HANDLERS."""
    if package in ASSEMBLY_PACKAGES:
        return "May import: anything, as the app assembly does."
    # billing, tokens, the shared modules, other whole packages, then single modules
    order = {"billing": 0, "tokens": 1, "shared": 2}
    names = sorted(ALLOWED[package], key=lambda name: (order.get(name, 4 if "." in name else 3), name))
    items = ["the shared modules" if name == "shared" else f"`{name}`" for name in names]
    sentence = "May import: " + (and_list(items) if items else "nothing else of the gateway")
    handlers = [f"`{name.partition('.')[2]}`" for name in sorted(HANDLERS) if name.startswith(f"{package}.")]
    return sentence + (f"; {and_list(handlers)} also the app state." if handlers else ".")


def package_docstring(root: Path, package: str) -> str:
    return ast.get_docstring(ast.parse((root / package / "__init__.py").read_text(encoding="utf-8"))) or ""


def docstring_disagreements(root: Path) -> list[str]:
    """Each package whose docstring's "May import:" sentence is not the one the tables give (what follows that
    sentence is free prose)."""
    found = []
    for package in sorted(PACKAGES):
        text = " ".join(package_docstring(root, package).split())  # line breaks fall anywhere
        if text.count("May import:") != 1 or may_import(package) not in text:
            found.append(f"gateway/{package}/__init__.py should say: {may_import(package)}")
    return found


def test_every_package_states_what_it_owns_and_may_import() -> None:
    assert docstring_disagreements(GATEWAY_DIR) == []


def test_a_docstring_that_says_more_than_the_table_is_caught(tree_copy: Path) -> None:
    path = tree_copy / "usage" / "__init__.py"
    path.write_text(path.read_text().replace("May import:", "May import: `tokens`,"))
    assert docstring_disagreements(tree_copy) == [f"gateway/usage/__init__.py should say: {may_import('usage')}"]


def test_a_table_that_allows_more_than_the_docstring_says_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ALLOWED, "tokens", {"billing"})
    monkeypatch.setattr(f"{__name__}.HANDLERS", HANDLERS | {"usage.views"})
    assert docstring_disagreements(GATEWAY_DIR) == [
        "gateway/tokens/__init__.py should say: May import: `billing`.",
        "gateway/usage/__init__.py should say: May import: `billing`, the shared modules, `admin.accounts` and "
        "`admin.auth`; `handlers` and `views` also the app state.",
    ]


def named_modules(docstring: str) -> set[str]:
    """The names backticked alone in the docstring's paragraph that starts with "Modules"."""
    paragraphs = [p for p in docstring.split("\n\n") if p.startswith("Modules")]
    return set(re.findall(r"`(\w+)`", paragraphs[0])) if len(paragraphs) == 1 else set()


def test_every_package_names_its_modules() -> None:
    for package in PACKAGES:
        modules = {path.stem for path in (GATEWAY_DIR / package).glob("*.py")} - {"__init__"}
        assert named_modules(package_docstring(GATEWAY_DIR, package)) == modules, f"gateway/{package}/__init__.py"


def stated_roles(docstring: str) -> dict[str, set[str]]:
    """The modules each role's block in gateway/__init__.py's docstring names (backticked), by role."""
    roles: dict[str, set[str]] = {}
    role = None
    for line in docstring.splitlines():
        head = re.match(r" {4}(shared|state|assembly) {2,}\S", line)
        if head:
            role = head[1]
        elif not line.startswith(" " * 16):  # a block's lines go on indented under its first
            role = None
        if role:
            roles.setdefault(role, set()).update(re.findall(r"`(\w+)`", line))
    return roles


def test_the_gateway_docstring_places_every_module_and_package() -> None:
    docstring = package_docstring(GATEWAY_DIR.parent, "gateway")
    roles = {"shared": SHARED - {"__init__"}, "state": STATE, "assembly": ASSEMBLY}
    assert stated_roles(docstring) == roles, "gateway/__init__.py: each role's block names exactly its modules"
    assert set(re.findall(r"^ {4}(\w+)/ ", docstring, re.MULTILINE)) == PACKAGES, "gateway/__init__.py: packages"


def helper_imports(root: Path) -> list[str]:
    """Imports of a conftest.py or a test file in the tests at `root`: tests import helpers by name from helper
    modules (`tests/common.py`, `tests/billing/common.py`, ...), and conftest.py holds fixtures only."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for name in names:
                last = name.rpartition(".")[2]
                if name.startswith("tests.") and (last == "conftest" or last.startswith("test_")):
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} imports {name}")
    return found


def test_tests_import_helpers_from_helper_modules_only() -> None:
    assert helper_imports(TESTS_DIR) == []


def test_a_helper_imported_from_a_conftest_or_a_test_file_is_caught(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    (tests / "proxy").mkdir(parents=True)
    (tests / "proxy" / "test_a.py").write_text("from tests.conftest import ADMIN_TOKEN\nfrom tests.common import X\n")
    (tests / "test_b.py").write_text("import os\n\n\ndef f() -> None:\n    from tests.tokens import test_images\n")
    assert helper_imports(tests) == [
        "tests/proxy/test_a.py:1 imports tests.conftest",
        "tests/test_b.py:5 imports tests.tokens.test_images",
    ]


def test_every_data_file_ships_in_the_wheel() -> None:
    """Scripts and vocabularies are package data: a file moved to a new folder must not drop out of the wheel."""
    pyproject = tomllib.loads((GATEWAY_DIR.parent / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["gateway"]
    data = [p for p in GATEWAY_DIR.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")]
    assert data and all(any(p.relative_to(GATEWAY_DIR).match(glob) for glob in patterns) for p in data), patterns


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """A copy of the gateway's sources to break on purpose."""
    copy = tmp_path / "gateway"
    shutil.copytree(GATEWAY_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "vocab"))
    return copy


@pytest.mark.parametrize(
    ("module", "wrong_import", "reason"),
    [
        # billing/ uses nothing else of the gateway
        ("billing/ledger.py", "from gateway.usage.reader import UsageReader", "billing may import only nothing else"),
        ("tokens/counter.py", "from gateway.billing import Price", "tokens may import only nothing else"),
        # a service reaching up into a handler, or into the app state
        ("proxy/metering.py", "from gateway.proxy.exchange import ChatExchange", "services never import handlers"),
        ("usage/reader.py", "from gateway.app_state import REDIS", "services never read the app state"),
        # one handler package using another's handlers, and a sideways import between services
        ("usage/handlers.py", "from gateway.proxy import handlers", "imported only within it"),
        ("admin/service.py", "import gateway.usage.views", "admin may import only billing, shared"),
        # the mock upstream is not part of the gateway
        ("mock/reply.py", "from gateway.tokens import TokenCounter", "mock may import only nothing else"),
    ],
)
def test_a_wrong_import_is_caught(tree_copy: Path, module: str, wrong_import: str, reason: str) -> None:
    assert violations(tree_copy) == []
    path = tree_copy / module
    path.write_text(path.read_text() + f"\n\ndef _wrong() -> None:\n    {wrong_import}\n")
    found = violations(tree_copy)
    assert len(found) == 1 and found[0].startswith(f"gateway/{module}:") and reason in found[0], found


def test_a_module_without_a_place_is_caught(tree_copy: Path) -> None:
    (tree_copy / "helpers.py").write_text("")
    with pytest.raises(LookupError, match="helpers.py has no place"):
        for path in tree_copy.rglob("*.py"):
            part_of(module_name(path, tree_copy))
