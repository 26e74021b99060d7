with

customers as (

    select * from {{ ref('dim_customer') }}

),

orders as (

    select * from {{ ref('int_orders') }}

),

history as (

    select * from {{ ref('int_customer_history') }}

),

last_365d as (

    -- the one as_of-relative aggregate: orders of the last 365 days only
    select
        customer_id,
        count(*) as orders_365d,
        {{ exact_sum('order_amount') }} as spend_365d
    from orders
    where ordered_at > {{ dbt.dateadd('day', -365, as_of()) }}
    group by customer_id

),

order_stats as (

    select
        history.customer_id,
        history.lifetime_orders,
        coalesce(last_365d.orders_365d, 0) as orders_365d,
        history.total_spend,
        coalesce(last_365d.spend_365d, 0) as spend_365d,
        history.first_purchase_at,
        history.last_purchase_at,
        history.categories_purchased
    from history
    left join last_365d
        on history.customer_id = last_365d.customer_id

),

final as (

    select
        -- ids
        customers.customer_id,

        -- counts
        coalesce(order_stats.lifetime_orders, 0) as lifetime_orders,
        coalesce(order_stats.orders_365d, 0) as orders_365d,
        coalesce(order_stats.categories_purchased, 0) as categories_purchased,

        -- money
        coalesce(order_stats.total_spend, 0) as total_spend,
        coalesce(order_stats.spend_365d, 0) as spend_365d,
        order_stats.total_spend / nullif(order_stats.lifetime_orders, 0) as avg_order_value,

        -- timestamps and durations, relative to as_of
        order_stats.first_purchase_at,
        order_stats.last_purchase_at,
        {{ dbt.datediff('order_stats.last_purchase_at', as_of(), 'day') }} as recency_days,
        {{ dbt.datediff('customers.signup_date', as_of(), 'day') }} as tenure_days,
        case
            when customers.signup_date is null then 'unknown'
            when {{ dbt.datediff('customers.signup_date', as_of(), 'day') }} < 90 then 'under 3 months'
            when {{ dbt.datediff('customers.signup_date', as_of(), 'day') }} < 365 then '3-12 months'
            when {{ dbt.datediff('customers.signup_date', as_of(), 'day') }} < 730 then '1-2 years'
            else '2 years and over'
        end as tenure_band

    from customers
    left join order_stats
        on customers.customer_id = order_stats.customer_id

)

select * from final
