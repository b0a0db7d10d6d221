"""Stream dataprep shards into an InternVL-style SFT job (exports to trainers' layouts: `dataprep export`).

Depends on the shard contract (`dataprep.contract`) only.
"""
