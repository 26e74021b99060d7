-- One row per (buyer, category A, category B): how many of the customer's orders hold both
-- (A = B: how many hold A). The order-level counts of category_affinity, summed per customer so
-- that a daily run recounts only the customers it touched. Incremental by customer, like
-- int_orders: an order is a customer's order_id.
{{ incremental_by_customer() }}
with

order_categories as (

    select distinct customer_id, order_id, category
    from {{ ref('fct_purchase') }}
    {{ where_refreshed() }}

),

final as (

    select
        antecedents.customer_id,
        antecedents.category as antecedent,
        consequents.category as consequent,
        count(*) as orders
    from order_categories as antecedents
    inner join order_categories as consequents
        on antecedents.customer_id = consequents.customer_id
        and antecedents.order_id = consequents.order_id
    group by 1, 2, 3

)

select * from final
