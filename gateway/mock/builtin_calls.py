"""The mock's built-in tool calls: output items of the tools OpenAI runs and bills per call (Responses), and
Anthropic's web searches (Messages).

With `builtin_tool_calls = N` a Responses request offering a built-in tool gets N calls of the first such tool
before its reply, at most its `max_tool_calls` (a misbehaving upstream, `builtin_calls_past_limit`, makes all N
anyway). Each is an output item of the tool's own type, with the lifecycle events OpenAI streams for it. A
Messages request offering Anthropic's web search tool (`web_search_YYYYMMDD`) gets N searches, at most the tool's
`max_uses`: a `server_tool_use` block and its `web_search_tool_result` each, reported as
`usage.server_tool_use.web_search_requests`. The mock's own tables, written from the providers' API references;
nothing comes from the gateway.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

from gateway.mock.options import MockOptions

# Request tool type (undated) -> (output item type, id prefix, whether it streams in_progress/completed events).
ITEMS: dict[str, tuple[str, str, bool]] = {
    "web_search": ("web_search_call", "ws", True),
    "web_search_preview": ("web_search_call", "ws", True),
    "file_search": ("file_search_call", "fs", True),
    "code_interpreter": ("code_interpreter_call", "ci", True),
    "image_generation": ("image_generation_call", "ig", True),
    "computer_use_preview": ("computer_call", "cu", False),
    "computer": ("computer_call", "cu", False),
    "mcp": ("mcp_call", "mcp", True),
    "local_shell": ("local_shell_call", "lsh", False),
}
DATED = re.compile(r"_\d{4}_\d{2}_\d{2}$")


def calls_for(body: Mapping[str, object], options: MockOptions) -> list[BuiltinCall]:
    """The calls the mock makes for a Responses request."""
    kind = _first_builtin(body.get("tools"))
    if kind is None or options.builtin_tool_calls <= 0:
        return []
    count = options.builtin_tool_calls
    limit = body.get("max_tool_calls")
    if isinstance(limit, int) and not options.builtin_calls_past_limit:
        count = min(count, limit)
    return [BuiltinCall(kind, number) for number in range(count)]


def _first_builtin(tools: object) -> str | None:
    for tool in tools if isinstance(tools, list) else []:
        kind = tool.get("type") if isinstance(tool, Mapping) else None
        if isinstance(kind, str) and DATED.sub("", kind) in ITEMS:
            return DATED.sub("", kind)
    return None


class BuiltinCall:
    """One call: its item, in progress and done, and the events a stream shows it with."""

    def __init__(self, tool: str, number: int):
        self.item_type, prefix, self.has_events = ITEMS[tool]
        self.id = f"{prefix}_{uuid.uuid4().hex}"
        self.number = number

    def item(self, done: bool) -> dict[str, object]:
        item: dict[str, object] = {
            "id": self.id,
            "type": self.item_type,
            "status": "completed" if done else "in_progress",
        }
        if self.item_type == "web_search_call":
            item["action"] = {"type": "search", "query": f"query {self.number}"}
        elif self.item_type in ("computer_call", "local_shell_call"):
            item["call_id"] = f"call_{self.id}"
        return item

    def events(self, index: int) -> list[dict[str, object]]:
        """Its stream events at output index `index`, without sequence numbers."""
        where = {"output_index": index, "item_id": self.id}
        events: list[dict[str, object]] = [
            {"type": "response.output_item.added", "output_index": index, "item": self.item(False)}
        ]
        if self.has_events:
            events.append({"type": f"response.{self.item_type}.in_progress", **where})
            events.append({"type": f"response.{self.item_type}.completed", **where})
        events.append({"type": "response.output_item.done", "output_index": index, "item": self.item(True)})
        return events


def searches_for(body: Mapping[str, object], options: MockOptions) -> int:
    """How many web searches the mock makes for a Messages request."""
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        if isinstance(tool, Mapping) and str(tool.get("type", "")).startswith("web_search_"):
            uses = tool.get("max_uses")
            if isinstance(uses, int) and not options.builtin_calls_past_limit:
                return max(min(options.builtin_tool_calls, uses), 0)
            return max(options.builtin_tool_calls, 0)
    return 0


def search_blocks(number: int) -> list[dict[str, object]]:
    """One web search as Messages content: the server tool's call and its result."""
    call_id = f"srvtoolu_{uuid.uuid4().hex[:24]}"
    query = {"query": f"query {number}"}
    result = {
        "type": "web_search_result",
        "url": f"https://example.com/{number}",
        "title": f"Result {number}",
        "encrypted_content": "mock",
        "page_age": None,
    }
    return [
        {"type": "server_tool_use", "id": call_id, "name": "web_search", "input": query},
        {"type": "web_search_tool_result", "tool_use_id": call_id, "content": [result]},
    ]
