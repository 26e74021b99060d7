-- The per-customer summary BG/NBD and Gamma-Gamma are fitted on, as in Fader, Hardie & Lee:
-- transactions are calendar days with a purchase, time is in weeks, and the monetary value is
-- the mean of the repeat transactions only.
with

orders as (

    select * from {{ ref('int_orders') }}

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

summary as (

    select
        customer_id,
        count(*) - 1 as frequency,
        min(order_date) as first_purchase_date,
        max(order_date) as last_purchase_date,
        {{ exact_avg('case when day_number > 1 then day_amount end') }} as monetary_value,
        {{ exact_sum('day_amount') }} as total_spend
    from numbered
    group by customer_id

),

final as (

    select
        customer_id,
        frequency,
        {{ dbt.datediff('first_purchase_date', 'last_purchase_date', 'day') }} / 7.0
            as recency_weeks,
        {{ dbt.datediff('first_purchase_date', 'cast(' ~ as_of() ~ ' as date)', 'day') }} / 7.0
            as age_weeks,
        monetary_value,
        total_spend
    from summary

)

select * from final
