with

customers as (

    select * from {{ ref('dim_customer') }}

),

orders as (

    select * from {{ ref('int_orders') }}

),

lines as (

    select * from {{ ref('fct_purchase') }}

),

order_stats as (

    select
        customer_id,
        count(*) as lifetime_orders,
        sum(case when ordered_at > {{ dbt.dateadd('day', -365, as_of()) }} then 1 else 0 end)
            as orders_365d,
        {{ exact_sum('order_amount') }} as total_spend,
        {{ exact_sum(
            "case when ordered_at > " ~ dbt.dateadd('day', -365, as_of())
            ~ " then order_amount else 0 end"
        ) }} as spend_365d,
        min(ordered_at) as first_purchase_at,
        max(ordered_at) as last_purchase_at
    from orders
    group by customer_id

),

category_stats as (

    select
        customer_id,
        count(distinct category) as categories_purchased
    from lines
    group by customer_id

),

final as (

    select
        -- ids
        customers.customer_id,

        -- counts
        coalesce(order_stats.lifetime_orders, 0) as lifetime_orders,
        coalesce(order_stats.orders_365d, 0) as orders_365d,
        coalesce(category_stats.categories_purchased, 0) as categories_purchased,

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
    left join category_stats
        on customers.customer_id = category_stats.customer_id

)

select * from final
