{#-
  On Spark (target `spark`) dbt runs in its own JVM with a Derby metastore and cannot read the
  DuckDB warehouse. Dagster writes every table dbt reads as Parquet directories under
  <RETAIL_DP_SPARK_DIR>/lake/<schema>/<table>/ (the list is var `spark_lake_tables`), and this
  on-run-start hook registers them as external tables, so models read them under the same
  names as on DuckDB (sources.purchase, reference.run_context, ...). Dropping an external
  table keeps its files. On DuckDB it does nothing.
-#}
{% macro register_lake_tables() -%}
    {{ return(adapter.dispatch('register_lake_tables')()) }}
{%- endmacro %}

{% macro default__register_lake_tables() -%}
{%- endmacro %}

{% macro spark__register_lake_tables() -%}
    {%- if execute -%}
        {%- set lake = spark_lake_dir() -%}
        {%- for name in lake_tables_to_register() -%}
            {%- set schema, identifier = name.split('.') -%}
            {%- set relation = api.Relation.create(schema=schema, identifier=identifier, type='table') -%}
            {%- set location = lake ~ '/' ~ schema ~ '/' ~ identifier -%}
            {%- do run_query('create database if not exists ' ~ adapter.quote(schema)) -%}
            {%- do run_query('drop table if exists ' ~ relation) -%}
            {%- do run_query(
                'create table ' ~ relation ~ ' using parquet location '
                ~ "'" ~ location | replace("'", "\\'") ~ "'") -%}
            {#- the relation cache was filled before this hook: tell it the table exists -#}
            {%- do adapter.cache_added(relation) -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}

{#-
  The lake tables this run reads: the sources a selected node depends on (so the fitted marts,
  absent before the model fits, are registered only by the semantic step), and the tables read
  without source() (reference.run_context, through as_of()) by any run that selects more than
  seeds.
-#}
{% macro lake_tables_to_register() -%}
    {%- set sources_read = [] -%}
    {%- set reads_context = [] -%}
    {%- for unique_id in selected_resources -%}
        {%- if unique_id in graph.sources -%}
            {%- do sources_read.append(unique_id) -%}
        {%- endif -%}
        {%- set node = graph.nodes.get(unique_id) -%}
        {%- if node is not none -%}
            {%- if node.resource_type != 'seed' -%}
                {%- do reads_context.append(unique_id) -%}
            {%- endif -%}
            {%- do sources_read.extend(node.depends_on.nodes | select('in', graph.sources) | list) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set source_names = {} -%}
    {%- for source in graph.sources.values() -%}
        {%- do source_names.update({source.schema ~ '.' ~ source.identifier: source.unique_id}) -%}
    {%- endfor -%}
    {%- set tables = [] -%}
    {%- for name in var('spark_lake_tables') -%}
        {%- if name in source_names and source_names[name] in sources_read -%}
            {%- do tables.append(name) -%}
        {%- elif name not in source_names and reads_context -%}
            {%- do tables.append(name) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(tables) }}
{%- endmacro %}

{#-
  <RETAIL_DP_SPARK_DIR>/lake, as an absolute URI: beside the warehouse directory profiles.yml
  sets, which Spark has made absolute (a relative LOCATION would not be read from the working
  directory).
-#}
{% macro spark_lake_dir() -%}
    {%- set warehouse = run_query('set spark.sql.warehouse.dir').rows[0][1] -%}
    {{ return(warehouse.rstrip('/').rsplit('/', 1)[0] ~ '/lake') }}
{%- endmacro %}
