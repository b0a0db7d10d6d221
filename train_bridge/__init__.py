"""Stream dataprep shards into an InternVL-style SFT job, or export them to the official layout.

Depends on the shard contract (`dataprep.contract`) only.
"""
