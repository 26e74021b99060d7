{#-
  The run's one reference time, as a SQL timestamp. Dagster writes it to reference.run_context
  before each dbt call (not as a --vars value, which would make dbt re-parse the project every
  run). For ad-hoc use: dbt build --vars '{as_of: "2026-07-01 00:00:00"}'.
-#}
{% macro as_of() -%}
    {%- if var('as_of', none) is not none -%}
        cast('{{ var("as_of") }}' as {{ dbt.type_timestamp() }})
    {%- else -%}
        (select as_of from reference.run_context)
    {%- endif -%}
{%- endmacro %}

{#-
  Whether this run refits the models (reference.run_context.refit, decided by Dagster from the
  consumer descriptor's refit_every_days). Runs that do not refit build only the as_of
  snapshot of the cross-sell features: the older snapshots are what a fit trains on.
-#}
{% macro refit() -%}
    {%- set context = adapter.get_relation(
        database=target.database, schema='reference', identifier='run_context') -%}
    {%- if var('refit', none) is not none -%}
        {{ 'true' if var('refit') else 'false' }}
    {%- elif var('as_of', none) is not none or context is none -%}
        true
    {%- else -%}
        coalesce((select refit from {{ context }}), true)
    {%- endif -%}
{%- endmacro %}
