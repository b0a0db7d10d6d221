"""The build as jobs on local worker processes or Ray, one module per stage: `build.build` runs them
all under the output lock.

`settings` (what a build is asked), `session` (the executor and signals), `runner` (the runners'
contract, one failure summary), `process_runner` (jobs in local worker processes), `ray_runner` (jobs
as Ray tasks), `entry` (the inputs of one recipe entry), `downloads` (fetch every entry's files),
`normalize_all` (units into parts, then the kept samples), `plan` (the mixture plan), `shard_cache`
(shards written or reused by their markers), `output` (the output folder's safety and lock),
`make_manifest` (the results as a manifest). Knows nothing of any one source."""
