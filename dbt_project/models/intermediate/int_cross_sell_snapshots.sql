-- One row per (snapshot, customer who had bought by the snapshot): DataOS's score as it stood
-- then, and whether the customer bought any category new to them in the next 90 days.
with

{{ snapshot_history() }},

category_totals as (

    -- what each customer had spent on each category by each snapshot: all of it at as_of
    -- (int_customer_categories, whose lines all precede as_of), and from the lines before
    -- the cutoff at the older snapshots, built on refit runs only
    select 0 as days_before_as_of, customer_id, category, spend
    from {{ ref('int_customer_categories') }}
    union all
    select
        cutoffs.days_before_as_of,
        lines.customer_id,
        lines.category,
        {{ exact_sum('lines.amount') }} as spend
    from {{ ref('fct_purchase') }} as lines
    inner join cutoffs
        on lines.purchase_ts <= cutoffs.cutoff
    where cutoffs.days_before_as_of > 0
    group by cutoffs.days_before_as_of, lines.customer_id, lines.category

),

spend as (

    select
        days_before_as_of,
        customer_id,
        {{ category_spend(amount='spend') }}
    from category_totals
    group by days_before_as_of, customer_id

),

purchases as (

    select days_before_as_of, customer_id, count(*) as purchases
    from order_history
    group by days_before_as_of, customer_id

),

new_category_buyers as (

    -- a new category is one the customer had not bought by the snapshot: exactly the
    -- candidate rows of int_cross_sell_features
    select distinct days_before_as_of, customer_id
    from {{ ref('int_cross_sell_features') }}
    where bought_next_90d = 1

),

final as (

    select
        spend.days_before_as_of,
        spend.customer_id,
        {{ dataos_cross_sell_score(
            'spend.mntwines', 'spend.mntmeatproducts', 'spend.mntfishproducts',
            'spend.mntsweetproducts', 'spend.mntgoldprods', 'spend.mntfruits',
            'coalesce(purchases.purchases, 0)'
        ) }} as dataos_cross_sell_score,
        case
            when spend.days_before_as_of = 0 then null
            when new_category_buyers.customer_id is not null then 1
            else 0
        end as bought_new_category_next_90d
    from spend
    left join purchases
        on spend.days_before_as_of = purchases.days_before_as_of
        and spend.customer_id = purchases.customer_id
    left join new_category_buyers
        on spend.days_before_as_of = new_category_buyers.days_before_as_of
        and spend.customer_id = new_category_buyers.customer_id

)

select * from final
