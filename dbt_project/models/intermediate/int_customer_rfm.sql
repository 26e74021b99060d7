-- The per-customer summary BG/NBD and Gamma-Gamma are fitted on, as in Fader, Hardie & Lee:
-- transactions are calendar days with a purchase, time is in weeks, and the monetary value is
-- the mean of the repeat transactions only. Read from int_customer_history; only the ages are
-- relative to as_of.
with

history as (

    select * from {{ ref('int_customer_history') }}

),

final as (

    select
        customer_id,
        frequency,
        cast({{ dbt.datediff('first_purchase_date', 'last_purchase_date', 'day') }} as double) / 7
            as recency_weeks,
        cast({{ dbt.datediff('first_purchase_date', 'cast(' ~ as_of() ~ ' as date)', 'day') }} as double) / 7
            as age_weeks,
        monetary_value,
        day_spend as total_spend
    from history

)

select * from final
