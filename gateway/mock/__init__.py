"""The mock upstream (`gateway mock-upstream`): an OpenAI-compatible server for tests, benchmarks and trying
the gateway without a provider key.

Modules: `options` (how it behaves), `reply` (what it answers), `server` (the aiohttp app).

May import: `tokens` only, to count the usage it reports. It is an upstream, not part of the gateway: nothing
else of the gateway may import it but the CLI.
"""
