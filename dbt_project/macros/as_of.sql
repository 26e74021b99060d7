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
