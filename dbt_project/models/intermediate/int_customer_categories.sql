-- One row per (buyer, category they bought): spend, lines and the first and last purchase,
-- independent of as_of. Incremental by customer, like int_customer_history.
-- depends_on: {{ ref('int_refresh_scope') }}
-- depends_on: {{ ref('int_touched_customers') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ delete_refreshed_customers() }}"
) }}
with

lines as (

    select * from {{ ref('fct_purchase') }}
    {% if is_incremental() %}
    where {{ in_refresh_scope('customer_id') }}
    {% endif %}

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
