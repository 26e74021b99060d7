-- One row per customer with every customer-level measure the semantic model serves:
-- purchase behaviour, the DataOS profile's measures, CLV (historical and predicted) and the
-- cross-sell score. Built after the model fits, which write the two fitted marts.
select
    c.customer_id,
    c.signup_date,
    m.lifetime_orders,
    m.orders_365d,
    m.total_spend,
    m.spend_365d,
    m.avg_order_value,
    m.recency_days,
    m.tenure_band,
    m.categories_purchased,
    case
        when m.orders_365d >= 10 then '10+'
        when m.orders_365d >= 5 then '5-9'
        when m.orders_365d >= 3 then '3-4'
        else cast(m.orders_365d as {{ dbt.type_string() }})
    end as orders_365d_band,
    p.average_spend,
    p.churn_probability,
    p.dataos_cross_sell_score,
    v.historical_clv,
    v.predicted_clv_365d,
    v.probability_alive,
    v.value_tier,
    case
        when v.predicted_clv_365d < 100 then '0-100'
        when v.predicted_clv_365d < 250 then '100-250'
        when v.predicted_clv_365d < 500 then '250-500'
        when v.predicted_clv_365d < 1000 then '500-1000'
        when v.predicted_clv_365d < 2500 then '1000-2500'
        else '2500+'
    end as predicted_clv_band,
    r.cross_sell_opportunity_score,
    r.next_best_category_1,
    r.next_best_category_2,
    r.next_best_category_3
from {{ ref('dim_customer') }} as c
join {{ ref('customer_purchase_metrics') }} as m using (customer_id)
join {{ ref('customer_category_profile') }} as p using (customer_id)
join {{ source('fitted', 'customer_lifetime_value') }} as v using (customer_id)
join {{ source('fitted', 'cross_sell_recommendations') }} as r using (customer_id)
