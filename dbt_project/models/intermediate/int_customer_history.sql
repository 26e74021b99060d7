-- One row per buyer: what their whole purchase history adds up to, independent of as_of, so a
-- daily run recomputes only the customers it touched. Transactions are calendar days with a
-- purchase (Fader, Hardie & Lee); the monetary value is the mean of the repeat days only.
{{ incremental_by_customer() }}
with

orders as (

    select * from {{ ref('int_orders') }}
    {{ where_refreshed() }}

),

lines as (

    select * from {{ ref('fct_purchase') }}
    {{ where_refreshed() }}

),

purchase_days as (

    select
        customer_id,
        order_date,
        {{ exact_sum('order_amount') }} as day_amount
    from orders
    group by customer_id, order_date

),

numbered as (

    select
        purchase_days.*,
        row_number() over (partition by customer_id order by order_date) as day_number
    from purchase_days

),

day_summary as (

    select
        customer_id,
        count(*) - 1 as frequency,
        min(order_date) as first_purchase_date,
        max(order_date) as last_purchase_date,
        {{ exact_avg('case when day_number > 1 then day_amount end') }} as monetary_value,
        {{ exact_sum('day_amount') }} as day_spend
    from numbered
    group by customer_id

),

order_summary as (

    select
        customer_id,
        count(*) as lifetime_orders,
        {{ exact_sum('order_amount') }} as total_spend,
        min(ordered_at) as first_purchase_at,
        max(ordered_at) as last_purchase_at
    from orders
    group by customer_id

),

category_summary as (

    select
        customer_id,
        count(distinct category) as categories_purchased
    from lines
    group by customer_id

),

final as (

    select
        day_summary.customer_id,
        day_summary.frequency,
        day_summary.first_purchase_date,
        day_summary.last_purchase_date,
        day_summary.monetary_value,
        day_summary.day_spend,
        order_summary.lifetime_orders,
        order_summary.total_spend,
        order_summary.first_purchase_at,
        order_summary.last_purchase_at,
        coalesce(category_summary.categories_purchased, 0) as categories_purchased
    from day_summary
    inner join order_summary
        on day_summary.customer_id = order_summary.customer_id
    left join category_summary
        on day_summary.customer_id = category_summary.customer_id

)

select * from final
