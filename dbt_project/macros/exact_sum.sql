{#-
  A sum of money that does not depend on the order rows arrive in. DOUBLE addition does, in the
  last bit, so the same inputs could give different marts from one run to the next; DECIMAL
  addition is exact. Amounts are kept to 6 decimals, the published precision of money.
-#}
{% macro exact_sum(expression) -%}
    cast(sum(cast({{ expression }} as decimal(38, 6))) as double)
{%- endmacro %}

{#-
  The mean of `expression` over non-null values, the sum exactly as above. Divided as DOUBLE:
  DuckDB does that for a DECIMAL too, where Spark would round the quotient to 6 decimals.
-#}
{% macro exact_avg(expression) -%}
    cast(sum(cast({{ expression }} as decimal(38, 9))) as double) / count({{ expression }})
{%- endmacro %}
