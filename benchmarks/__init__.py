"""stepkeeper's benchmark suite: `python -m benchmarks [--quick] [--json results.json]`.

Modules: `suite` (sizes, repetitions, medians), `workloads` (the workloads on stepkeeper),
`baseline` (the bare SQLite floor), `report` (the table and the JSON).
"""
