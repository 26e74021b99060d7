"""The Spark engine: the same product on Apache Spark when one machine is not enough.

DuckDB stays the default and the serving store. With `RETAIL_DP_ENGINE=spark`, the landing
files are judged and loaded by Spark (`ingest`), dbt builds the models with dbt-spark, and the
results are copied into the DuckDB warehouse (`lake`), where the model fits, the checks and
publishing read them as they do on DuckDB. docs/scale-out.md says how this runs on a cluster.
"""
