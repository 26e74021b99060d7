{#-
  Daily increments. Ingestion records in sources.changes the purchase lines and products whose
  accepted row a load added or removed (retail_dp/sources/registry.py). The per-customer models
  (fct_purchase, int_orders, int_customer_history) are incremental: each run deletes and
  rebuilds only the customers those changes touched (int_touched_customers), or everyone when
  int_refresh_scope says so. A run that builds everything without an error or failed test moves
  reference.refresh_watermark to the last load it consumed; a failed run leaves it, so the next
  run refreshes those customers again. Rebuilding a customer twice gives the same rows.

  On Spark (Parquet tables, no DELETE) these models are full `table` rebuilds: every customer is
  in scope on every run, the load registry (sources.loads, sources.changes) is not read, and no
  watermark is kept. The spark__ variants below say so.
-#}

{#- TRUE for a row of a customer this run refreshes; `column` names the customer. -#}
{% macro in_refresh_scope(column='customer_id') -%}
    {{ return(adapter.dispatch('in_refresh_scope')(column)) }}
{%- endmacro %}

{% macro spark__in_refresh_scope(column='customer_id') -%}
    true
{%- endmacro %}

{% macro default__in_refresh_scope(column='customer_id') -%}
    {{ scope_predicate(column, ref('int_refresh_scope'), ref('int_touched_customers')) }}
{%- endmacro %}

{#- The predicate itself, over the two scope models given as relations. -#}
{% macro scope_predicate(column, refresh_scope, touched_customers) -%}
    ((select all_customers from {{ refresh_scope }})
     or {{ column }} in (select customer_id from {{ touched_customers }}))
{%- endmacro %}

{#- The pre-hook of a per-customer incremental model: drop the rows it is about to rebuild. -#}
{% macro delete_refreshed_customers() -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ in_refresh_scope() }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- The load registry's tables, which exist on DuckDB only: empty on Spark. -#}
{% macro registry_loads() -%}
    {{ return(adapter.dispatch('registry_loads')()) }}
{%- endmacro %}

{% macro default__registry_loads() -%}
    sources.loads
{%- endmacro %}

{% macro spark__registry_loads() -%}
    (select
        cast(null as bigint) as load_id,
        cast(null as {{ dbt.type_string() }}) as source,
        cast(null as {{ dbt.type_string() }}) as mode
    where false)
{%- endmacro %}

{% macro registry_changes() -%}
    {{ return(adapter.dispatch('registry_changes')()) }}
{%- endmacro %}

{% macro default__registry_changes() -%}
    sources.changes
{%- endmacro %}

{% macro spark__registry_changes() -%}
    (select
        cast(null as bigint) as load_id,
        cast(null as {{ dbt.type_string() }}) as source,
        cast(null as {{ dbt.type_string() }}) as key,
        cast(null as {{ dbt.type_string() }}) as customer_id,
        cast(null as {{ dbt.type_string() }}) as change
    where false)
{%- endmacro %}

{#- The load the incremental models are caught up to, or NULL before their first build. -#}
{% macro refresh_watermark() -%}
    {{ return(adapter.dispatch('refresh_watermark')()) }}
{%- endmacro %}

{#- Spark keeps no watermark: every run is a first build. -#}
{% macro spark__refresh_watermark() -%}
    cast(null as bigint)
{%- endmacro %}

{#- None on --full-refresh, which rebuilds every customer: the scoped tests then read them all. -#}
{% macro default__refresh_watermark() -%}
    {%- set relation = adapter.get_relation(
        database=target.database, schema='reference', identifier='refresh_watermark') -%}
    {%- if relation is not none and not flags.FULL_REFRESH -%}
        (select max(through_load_id) from {{ relation }})
    {%- else -%}
        cast(null as bigint)
    {%- endif -%}
{%- endmacro %}

{#- on-run-end: move the watermark when this run refreshed the models and nothing failed. -#}
{% macro advance_refresh_watermark(results) -%}
    {{ return(adapter.dispatch('advance_refresh_watermark')(results)) }}
{%- endmacro %}

{% macro spark__advance_refresh_watermark(results) -%}
    select 1
{%- endmacro %}

{% macro default__advance_refresh_watermark(results) -%}
    {%- set scoped = [] -%}
    {%- set failed = [] -%}
    {%- for result in results -%}
        {%- if result.node.name == 'int_refresh_scope' and result.status == 'success' -%}
            {%- do scoped.append(result) -%}
        {%- endif -%}
        {%- if result.status in ('error', 'fail', 'skipped', 'runtime error') -%}
            {%- do failed.append(result) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if execute and scoped and not failed -%}
        create schema if not exists reference;
        create or replace table reference.refresh_watermark as
        select through_load_id, current_timestamp as advanced_at
        from {{ scoped[0].node.relation_name }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#-
  The config of a per-customer incremental model, called at its top: each run deletes the rows
  of the customers it refreshes (pre-hook) and appends them again (the model selects only
  those customers with `where_refreshed()`). A change of its columns needs --full-refresh.
-#}
{% macro incremental_by_customer() -%}
    {{ return(adapter.dispatch('incremental_by_customer')()) }}
{%- endmacro %}

{#- Spark: a full rebuild each run (is_incremental() is then false: no scope is applied). -#}
{% macro spark__incremental_by_customer() -%}
    -- depends_on: {{ ref('int_refresh_scope') }}, {{ ref('int_touched_customers') }}
    {{ config(materialized='table') }}
{%- endmacro %}

{#- After the commit, a checkpoint: until one, DuckDB keeps the day's deletes (scattered over
    every row group of a table built in one go) in memory it cannot evict, and at 5M customers
    the next models ran out of the 2 GB limit. -#}

{% macro default__incremental_by_customer() -%}
    -- depends_on: {{ ref('int_refresh_scope') }}, {{ ref('int_touched_customers') }}
    {{ config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook="{{ delete_refreshed_customers() }}",
        post_hook=after_commit("checkpoint")
    ) }}
{%- endmacro %}

{#- The WHERE clause that keeps the customers this run refreshes (all on a first build). -#}
{% macro where_refreshed(column='customer_id') -%}
    {%- if is_incremental() %}
    where {{ in_refresh_scope(column) }}
    {%- endif %}
{%- endmacro %}

{#-
  The tests of the per-customer incremental models check what this run rebuilt: a test whose
  `where` config is `__refreshed_customers__` reads only the rows of the customers in this
  run's scope (everyone on a full build). A key whose row moved between customers touches both
  (sources.changes records the removed row's customer and the added one's), so a duplicate can
  only appear among rows in scope. Testing all of history every day cost a 5M-customer
  increment a hash of 104M keys, which ran out of DuckDB's 2 GB after the day's deletes.
  dbt renders a YAML `where` without project macros, hence the placeholder, replaced here.

  The tests on a source table may do the same with `__loaded_since_refresh__`: the rows loaded
  since the incremental models last caught up (every row on a first build, a full reload or a
  --full-refresh, which give every row a new load; and again after a failed run, which leaves
  the watermark). `__relation__` names the tested table, so that a key test can read the keys
  of those rows across the whole table.
-#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- if '__refreshed_customers__' in where -%}
            {%- set where = where | replace('__refreshed_customers__', refreshed_customers()) -%}
        {%- endif -%}
        {%- if '__loaded_since_refresh__' in where -%}
            {%- set loaded = '_load_id > coalesce(' ~ refresh_watermark() ~ ', -1)' -%}
            {%- set where = where | replace('__loaded_since_refresh__', loaded) -%}
        {%- endif -%}
        {%- set where = where | replace('__relation__', relation | string) -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{#- in_refresh_scope() for a test, which may not ref() a model it does not declare: the two
    models by their relation names from the graph (built before any model in scope). -#}
{% macro refreshed_customers(column='customer_id') -%}
    {{ return(adapter.dispatch('refreshed_customers')(column)) }}
{%- endmacro %}

{% macro spark__refreshed_customers(column='customer_id') -%}
    true
{%- endmacro %}

{% macro default__refreshed_customers(column='customer_id') -%}
    {%- set names = {} -%}
    {%- for node in graph.nodes.values() -%}
        {%- if node.resource_type == 'model'
              and node.name in ('int_refresh_scope', 'int_touched_customers') -%}
            {%- do names.update({node.name: node.relation_name}) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ scope_predicate(column, names['int_refresh_scope'], names['int_touched_customers']) }}
{%- endmacro %}
