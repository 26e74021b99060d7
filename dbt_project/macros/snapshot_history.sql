{#-
  CTEs shared by the cross-sell models: `cutoffs` (as_of, and 90 and 180 days before it on
  runs that refit the models: the snapshots a fit trains and is backtested on), `adoptions`
  (each category each customer had bought by each snapshot, and when they first bought it),
  `bought` (the same without the times) and `order_history` (each order placed by each
  snapshot).

  They read the per-customer incremental models, not the purchase lines: a customer had bought
  a category by a cutoff exactly when their first line in it (int_customer_categories) came by
  then, so a daily run reads ~2M (customer, category) rows and ~8M orders where it read 21M
  lines for each snapshot. An order counts at its first line (int_orders), as it does for the
  CLV models: an order whose lines straddle a cutoff counts whole on the side of its first.
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

adoptions as (

    select
        cutoffs.days_before_as_of,
        cutoffs.cutoff,
        customer_categories.customer_id,
        customer_categories.category,
        customer_categories.first_purchase_at as adopted_at,
        cast(customer_categories.first_purchase_at as date) as adopted_on
    from {{ ref('int_customer_categories') }} as customer_categories
    inner join cutoffs
        on customer_categories.first_purchase_at <= cutoffs.cutoff

),

bought as (

    select days_before_as_of, customer_id, category
    from adoptions

),

order_history as (

    select cutoffs.days_before_as_of, cutoffs.cutoff, orders.*
    from {{ ref('int_orders') }} as orders
    inner join cutoffs
        on orders.ordered_at <= cutoffs.cutoff

)
{%- endmacro %}
