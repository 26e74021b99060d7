-- One row per (snapshot, customer, category the customer had not bought by the snapshot).
-- Snapshots are as_of and 90 and 180 days before it; features use only purchases up to the
-- snapshot, and `bought_next_90d` says whether the category was bought in the 90 days after
-- it (null for the as_of snapshot: that is the future we score).
with

lines as (

    select * from {{ ref('fct_purchase') }}

),

categories as (

    select distinct category from {{ ref('dim_product') }}

),

{{ snapshot_history() }},

customer_stats as (

    select
        days_before_as_of,
        customer_id,
        count(distinct order_id) as orders,
        count(distinct case
            when purchase_ts > {{ dbt.dateadd('day', -90, 'cutoff') }} then order_id
        end) as orders_90d,
        count(distinct category) as categories_bought,
        {{ exact_sum('amount') }} as spend,
        {{ dbt.datediff('max(purchase_ts)', 'max(cutoff)', 'day') }} as recency_days,
        -- the BG/NBD summary at the snapshot (purchase days, weeks)
        count(distinct purchase_date) - 1 as frequency,
        {{ dbt.datediff('min(purchase_date)', 'max(purchase_date)', 'day') }} / 7.0
            as recency_weeks,
        {{ dbt.datediff('min(purchase_date)', 'cast(max(cutoff) as date)', 'day') }} / 7.0
            as age_weeks
    from history
    group by days_before_as_of, customer_id

),

basket_totals as (

    select days_before_as_of, count(distinct customer_id) as customers
    from bought
    group by days_before_as_of

),

category_counts as (

    select days_before_as_of, category, count(*) as buyers
    from bought
    group by days_before_as_of, category

),

pair_counts as (

    select a.days_before_as_of, a.category as antecedent, b.category as consequent, count(*) as both_
    from bought as a
    inner join bought as b
        on a.days_before_as_of = b.days_before_as_of
        and a.customer_id = b.customer_id
        and a.category <> b.category
    group by a.days_before_as_of, a.category, b.category

),

rules as (

    select
        pair_counts.days_before_as_of,
        pair_counts.antecedent,
        pair_counts.consequent,
        1.0 * pair_counts.both_ / category_counts.buyers as confidence
    from pair_counts
    inner join category_counts
        on pair_counts.days_before_as_of = category_counts.days_before_as_of
        and pair_counts.antecedent = category_counts.category

),

candidates as (

    select customer_stats.days_before_as_of, customer_stats.customer_id, categories.category
    from customer_stats
    cross join categories
    where not exists (
        select 1 from bought
        where bought.days_before_as_of = customer_stats.days_before_as_of
            and bought.customer_id = customer_stats.customer_id
            and bought.category = categories.category
    )

),

affinity as (

    select
        candidates.days_before_as_of,
        candidates.customer_id,
        candidates.category,
        max(rules.confidence) as confidence_max,
        {{ exact_avg('rules.confidence') }} as confidence_mean
    from candidates
    inner join bought
        on candidates.days_before_as_of = bought.days_before_as_of
        and candidates.customer_id = bought.customer_id
    left join rules
        on rules.days_before_as_of = candidates.days_before_as_of
        and rules.antecedent = bought.category
        and rules.consequent = candidates.category
    group by candidates.days_before_as_of, candidates.customer_id, candidates.category

),

next_purchases as (

    select distinct cutoffs.days_before_as_of, lines.customer_id, lines.category
    from lines
    inner join cutoffs
        on lines.purchase_ts > cutoffs.cutoff
        and lines.purchase_ts <= {{ dbt.dateadd('day', 90, 'cutoffs.cutoff') }}
    where cutoffs.days_before_as_of >= 90

),

final as (

    select
        affinity.days_before_as_of,
        affinity.customer_id,
        affinity.category,
        customer_stats.orders,
        customer_stats.orders_90d,
        customer_stats.categories_bought,
        customer_stats.spend,
        customer_stats.recency_days,
        customer_stats.frequency,
        customer_stats.recency_weeks,
        customer_stats.age_weeks,
        coalesce(affinity.confidence_max, 0) as confidence_max,
        coalesce(affinity.confidence_mean, 0) as confidence_mean,
        1.0 * coalesce(category_counts.buyers, 0) / basket_totals.customers as category_support,
        case
            when affinity.days_before_as_of = 0 then null
            when next_purchases.category is not null then 1
            else 0
        end as bought_next_90d
    from affinity
    inner join customer_stats
        on affinity.days_before_as_of = customer_stats.days_before_as_of
        and affinity.customer_id = customer_stats.customer_id
    inner join basket_totals
        on affinity.days_before_as_of = basket_totals.days_before_as_of
    left join category_counts
        on affinity.days_before_as_of = category_counts.days_before_as_of
        and affinity.category = category_counts.category
    left join next_purchases
        on affinity.days_before_as_of = next_purchases.days_before_as_of
        and affinity.customer_id = next_purchases.customer_id
        and affinity.category = next_purchases.category

)

select * from final
