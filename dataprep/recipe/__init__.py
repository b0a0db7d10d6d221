"""The recipe: its plain models (`model`) and the YAML file loader that checks them (`load`)."""
