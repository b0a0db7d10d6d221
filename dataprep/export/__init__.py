"""A build in the layouts other tools read: InternVL's meta JSON + jsonl (`internvl.py`), LLaVA's JSON
array (`llava.py`), LLaMA-Factory's sharegpt + `dataset_info.json` (`llamafactory.py`), ms-swift's
messages jsonl (`swift.py`) and Hub-ready Parquet with the dataset card (`parquet.py`). They read the
shards through `dataprep.contract` alone (`samples.py`) and write into a folder only they own
(`folder.py`); no torch."""
