"""dataprep: reproducible vision-language SFT mixtures as webdataset shards, built on Ray."""

__version__ = "0.1.0"
