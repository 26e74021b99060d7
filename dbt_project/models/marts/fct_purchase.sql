-- Incremental by customer: a daily run rebuilds the lines of the customers it touched.
-- depends_on: {{ ref('int_refresh_scope') }}
-- depends_on: {{ ref('int_touched_customers') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ delete_refreshed_customers() }}"
) }}
with

purchases as (

    select * from {{ ref('stg_purchase') }}
    {% if is_incremental() %}
    where {{ in_refresh_scope('customer_id') }}
    {% endif %}

),

products as (

    select * from {{ ref('dim_product') }}

),

final as (

    select
        -- ids
        purchases.purchase_id,
        purchases.order_id,
        purchases.customer_id,
        purchases.product_id,

        -- categorical
        products.category,
        purchases.channel,
        purchases.is_deal,

        -- numerics
        purchases.quantity,
        purchases.unit_price,
        purchases.amount,

        -- timestamps
        purchases.purchase_ts,
        purchases.purchase_date,
        {{ dbt.date_trunc('month', 'purchases.purchase_ts') }} as purchase_month

    from purchases
    inner join products
        on purchases.product_id = products.product_id

)

select * from final
