-- Incremental by customer: a daily run rebuilds the lines of the customers it touched.
{{ incremental_by_customer() }}
with

purchases as (

    select * from {{ ref('stg_purchase') }}
    {{ where_refreshed() }}

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
