{#-
  CTEs shared by the cross-sell models: `cutoffs` (as_of, and 90 and 180 days before it on
  runs that refit the models: the snapshots a fit trains and is backtested on),
  `history` (each purchase line once per snapshot it precedes) and `bought` (the categories
  each customer had bought by each snapshot). `lines` must already be defined.
-#}
{% macro snapshot_history() -%}
cutoffs as (

    select
        days_before_as_of,
        {{ dbt.dateadd('day', '-days_before_as_of', as_of()) }} as cutoff
    from (
        select 0 as days_before_as_of
        union all select 90
        union all select 180
    ) as snapshots
    where days_before_as_of = 0 or {{ refit() }}

),

history as (

    select cutoffs.days_before_as_of, cutoffs.cutoff, lines.*
    from lines
    inner join cutoffs
        on lines.purchase_ts <= cutoffs.cutoff

),

bought as (

    select distinct days_before_as_of, customer_id, category
    from history

)
{%- endmacro %}
