{#- Spend per category as the DataOS example names it: mntwines, mntmeatproducts, ... -#}
{% macro category_spend(amount='amount', category='category') -%}
    {%- set columns = {
        'Wines': 'mntwines', 'Meats': 'mntmeatproducts', 'Fish': 'mntfishproducts',
        'Sweets': 'mntsweetproducts', 'Gold': 'mntgoldprods', 'Fruits': 'mntfruits'
    } -%}
    {%- for name, column in columns.items() %}
        {{ exact_sum("case when " ~ category ~ " = '" ~ name ~ "' then " ~ amount ~ " else 0 end") }} as {{ column }}
        {{- "," if not loop.last }}
    {%- endfor %}
{%- endmacro %}
