"""Test data and helpers shared by the tests: generated upstreams and user datasets, a loopback HTTP
server, builds of a recipe, reading an adapter's records, the bridge's shards, tokenizer and runs."""
