"""Money: prices, the Redis ledger and its Lua scripts."""
