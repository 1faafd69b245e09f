"""The mock upstream (`gateway mock-upstream`): an OpenAI-compatible server for tests, benchmarks and trying
the gateway without a provider key.

Modules: `options` (how it behaves), `reply` (what chat answers), `completions`, `embeddings` and `messages`
(those APIs' routes; `messages` is Anthropic's), `responses` (the Responses API, keeping the responses it made so
later turns can continue them; its built-in tool calls in `builtin_calls`), `conversations` (the Conversations
API, in memory), `counting` (its own token counts: tiktoken and the published rules, so the gateway's counts are
checked against a second implementation), `claude` (its own stand-in for Claude's token counts), `exchange` (what
every route shares: state, faults, the SSE sender), `server` (the aiohttp app).

May import: nothing else of the gateway. It reads only the vocabulary files the package ships. It is an
upstream, not part of the gateway: nothing else of the gateway may import it but the CLI.
"""
