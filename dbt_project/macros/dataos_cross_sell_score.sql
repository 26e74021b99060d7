{#- DataOS's cross-sell score: weighted category spend over purchases + 1. Not a probability. -#}
{% macro dataos_cross_sell_score(wines, meat, fish, sweets, gold, fruits, purchases) -%}
    (
        0.25 * {{ wines }} + 0.2 * {{ meat }} + 0.15 * {{ fish }}
        + 0.1 * {{ sweets }} + 0.3 * {{ gold }} + 0.2 * {{ fruits }}
    ) / ({{ purchases }} + 1)
{%- endmacro %}
