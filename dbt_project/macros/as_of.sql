{#- The run's one reference time, as a SQL timestamp. -#}
{% macro as_of() -%}
    cast('{{ var("as_of") }}' as {{ dbt.type_timestamp() }})
{%- endmacro %}
