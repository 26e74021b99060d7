-- One row per (buyer, category they bought): spend, lines and the first and last purchase,
-- independent of as_of. Incremental by customer, like int_customer_history.
{{ incremental_by_customer() }}
with

lines as (

    select * from {{ ref('fct_purchase') }}
    {{ where_refreshed() }}

),

final as (

    select
        customer_id,
        category,
        {{ exact_sum('amount') }} as spend,
        count(*) as lines,
        min(purchase_ts) as first_purchase_at,
        max(purchase_ts) as last_purchase_at
    from lines
    group by customer_id, category

)

select * from final
