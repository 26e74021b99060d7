-- One row per order: the unit that purchase frequency, channels and deals count.
-- Incremental by customer, like fct_purchase.
{{ incremental_by_customer() }}
with

lines as (

    select * from {{ ref('fct_purchase') }}
    {{ where_refreshed() }}

),

orders as (

    select
        -- ids
        order_id,
        customer_id,

        -- categorical: an order is placed in one channel; a deal on any line makes it a deal order
        min(channel) as channel,
        max(case when is_deal then 1 else 0 end) = 1 as is_deal,

        -- numerics
        count(*) as line_count,
        {{ exact_sum('amount') }} as order_amount,

        -- timestamps
        min(purchase_ts) as ordered_at,
        min(purchase_date) as order_date

    from lines
    group by order_id, customer_id

)

select * from orders
