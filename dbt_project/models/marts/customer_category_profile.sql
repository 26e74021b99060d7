-- The customer-level shape of the DataOS Product Affinity example, kept for compatibility so
-- its Lens measures can be reproduced. Its six category columns are zero when the catalogue has
-- no such category; spend and purchases cover every category and channel. Unlike DataOS's own
-- SQL, purchases count store orders once.
with

customers as (

    select * from {{ ref('dim_customer') }}

),

customer_categories as (

    select * from {{ ref('int_customer_categories') }}

),

orders as (

    select * from {{ ref('int_orders') }}

),

metrics as (

    select * from {{ ref('customer_purchase_metrics') }}

),

category_spend as (

    select
        customer_id,
        {{ category_spend('spend') }}
    from customer_categories
    group by customer_id

),

channel_orders as (

    select
        customer_id,
        sum(case when channel = 'web' then 1 else 0 end) as numwebpurchases,
        sum(case when channel = 'catalog' then 1 else 0 end) as numcatalogpurchases,
        sum(case when channel = 'store' then 1 else 0 end) as numstorepurchases,
        sum(case when is_deal then 1 else 0 end) as numdealspurchases
    from orders
    group by customer_id

),

profile as (

    select
        customers.customer_id,
        coalesce(category_spend.mntwines, 0) as mntwines,
        coalesce(category_spend.mntmeatproducts, 0) as mntmeatproducts,
        coalesce(category_spend.mntfishproducts, 0) as mntfishproducts,
        coalesce(category_spend.mntsweetproducts, 0) as mntsweetproducts,
        coalesce(category_spend.mntgoldprods, 0) as mntgoldprods,
        coalesce(category_spend.mntfruits, 0) as mntfruits,
        coalesce(channel_orders.numwebpurchases, 0) as numwebpurchases,
        coalesce(channel_orders.numcatalogpurchases, 0) as numcatalogpurchases,
        coalesce(channel_orders.numstorepurchases, 0) as numstorepurchases,
        coalesce(channel_orders.numdealspurchases, 0) as numdealspurchases,
        metrics.recency_days as recency,
        metrics.lifetime_orders as purchases,
        metrics.total_spend as spend
    from customers
    inner join metrics
        on customers.customer_id = metrics.customer_id
    left join category_spend
        on customers.customer_id = category_spend.customer_id
    left join channel_orders
        on customers.customer_id = channel_orders.customer_id

),

final as (

    select
        profile.*,
        spend / nullif(purchases, 0) as average_spend,
        -- decimal(2,1) on every engine (Spark would type these literals decimal(1,1))
        cast(case
            when recency < 30 and spend > 500 then 0.9
            when recency between 30 and 90 and spend between 100 and 500 then 0.5
            when recency > 90 or spend < 100 then 0.2
            else 0.1
        end as decimal(2, 1)) as churn_probability,
        {{ dataos_cross_sell_score(
            'mntwines', 'mntmeatproducts', 'mntfishproducts',
            'mntsweetproducts', 'mntgoldprods', 'mntfruits', 'purchases'
        ) }} as dataos_cross_sell_score
    from profile

)

select * from final
