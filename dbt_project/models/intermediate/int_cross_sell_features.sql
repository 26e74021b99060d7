-- One row per (snapshot, customer, category the customer had not bought by the snapshot).
-- Snapshots are as_of and 90 and 180 days before it; features use only purchases up to the
-- snapshot, and `bought_next_90d` says whether the category was bought in the 90 days after
-- it (null for the as_of snapshot: that is the future we score).
-- Adoption features carry direction and timing: for each category A, which categories
-- customers first bought next after A (A -> B), and how long after; estimated from the
-- history up to each snapshot only.
{%- set lag_bucket_days = 30 %}
{%- set last_lag_bucket = 24 %}
with

{{ snapshot_history() }},

customer_stats as (

    select
        days_before_as_of,
        customer_id,
        count(*) as orders,
        count(case
            when ordered_at > {{ dbt.dateadd('day', -90, 'cutoff') }} then 1
        end) as orders_90d,
        {{ exact_sum('order_amount') }} as spend,
        {{ dbt.datediff('max(ordered_at)', 'max(cutoff)', 'day') }} as recency_days,
        -- the BG/NBD summary at the snapshot (purchase days, weeks)
        count(distinct order_date) - 1 as frequency,
        cast({{ dbt.datediff('min(order_date)', 'max(order_date)', 'day') }} as double) / 7
            as recency_weeks,
        cast({{ dbt.datediff('min(order_date)', 'cast(max(cutoff) as date)', 'day') }} as double) / 7
            as age_weeks
    from order_history
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

adoption_steps as (

    -- each day a customer adopted a category, with their next such day
    select
        days_before_as_of,
        customer_id,
        adopted_on,
        lead(adopted_on) over (
            partition by days_before_as_of, customer_id order by adopted_on
        ) as next_adopted_on
    from (select distinct days_before_as_of, customer_id, adopted_on from adoptions) as days

),

next_adoptions as (

    -- A -> B: B was among the categories first bought on the first adoption day after A's
    select
        a.days_before_as_of,
        a.category as antecedent,
        b.category as consequent,
        {{ dbt.datediff('a.adopted_on', 'b.adopted_on', 'day') }} as lag_days
    from adoptions as a
    inner join adoption_steps as s
        on a.days_before_as_of = s.days_before_as_of
        and a.customer_id = s.customer_id
        and a.adopted_on = s.adopted_on
    inner join adoptions as b
        on a.days_before_as_of = b.days_before_as_of
        and a.customer_id = b.customer_id
        and b.adopted_on = s.next_adopted_on

),

transition_lags as (

    select
        days_before_as_of,
        antecedent,
        consequent,
        least(floor(cast(lag_days as double) / {{ lag_bucket_days }}), {{ last_lag_bucket }}) as lag_bucket,
        count(*) as transitions
    from next_adoptions
    group by 1, 2, 3, 4

),

lag_buckets as (

    {% for bucket in range(last_lag_bucket + 1) -%}
    select {{ bucket }} as lag_bucket{% if not loop.last %} union all {% endif %}
    {% endfor %}

),

transitions as (

    -- per pair: every A -> B transition, and for each lag bucket k those that took at least
    -- k buckets: still to come for a customer who adopted A k buckets ago
    select
        transition_lags.days_before_as_of,
        transition_lags.antecedent,
        transition_lags.consequent,
        lag_buckets.lag_bucket,
        sum(transition_lags.transitions) as due,
        max(totals.transitions) as transitions
    from transition_lags
    inner join lag_buckets
        on transition_lags.lag_bucket >= lag_buckets.lag_bucket
    inner join (
        select days_before_as_of, antecedent, consequent, sum(transitions) as transitions
        from transition_lags
        group by 1, 2, 3
    ) as totals
        on transition_lags.days_before_as_of = totals.days_before_as_of
        and transition_lags.antecedent = totals.antecedent
        and transition_lags.consequent = totals.consequent
    group by 1, 2, 3, 4

),

last_adoption as (

    -- each customer's most recent adoption day, and how long before the snapshot it was
    select
        adoptions.days_before_as_of,
        adoptions.customer_id,
        count(*) as categories_bought,
        max(adoptions.adopted_on) as last_adopted_on,
        {{ dbt.datediff('max(adoptions.adopted_on)', 'cast(max(cutoffs.cutoff) as date)', 'day') }}
            as days_since_last_adoption
    from adoptions
    inner join cutoffs on adoptions.days_before_as_of = cutoffs.days_before_as_of
    group by 1, 2

),

affinity as (

    select * from {{ ref('int_cross_sell_affinity') }}

),

pair_shares as (

    -- per (A, B, lag bucket): A -> B transitions as a share of A's adopters, in all and
    -- those that took at least that many buckets
    select
        transitions.days_before_as_of,
        transitions.antecedent,
        transitions.consequent,
        transitions.lag_bucket,
        transitions.transitions,
        cast(transitions.transitions as double) / category_counts.buyers as share,
        cast(transitions.due as double) / category_counts.buyers as due_share
    from transitions
    inner join category_counts
        on transitions.days_before_as_of = category_counts.days_before_as_of
        and transitions.antecedent = category_counts.category

),

owned as (

    select
        adoptions.days_before_as_of,
        adoptions.customer_id,
        adoptions.category,
        adoptions.adopted_on = last_adoption.last_adopted_on as is_last,
        -- how long ago the customer adopted this category, in lag buckets
        least(
            floor(
                cast({{ dbt.datediff('adoptions.adopted_on', 'cast(cutoffs.cutoff as date)', 'day') }} as double)
                / {{ lag_bucket_days }}
            ),
            {{ last_lag_bucket }}
        ) as lag_bucket
    from adoptions
    inner join last_adoption
        on adoptions.days_before_as_of = last_adoption.days_before_as_of
        and adoptions.customer_id = last_adoption.customer_id
    inner join cutoffs
        on adoptions.days_before_as_of = cutoffs.days_before_as_of

),

sequence as (

    -- only the (customer, B) with a transition into B from a category they own (sparse):
    -- over every owned A, the highest share of A's adopters who adopted B next, and of the
    -- part of it still to come as long after A as it has now been since the customer adopted
    -- A; from the most recently adopted A(s), that share and the plain count of A -> B
    select
        owned.days_before_as_of,
        owned.customer_id,
        pair.consequent as category,
        max(pair.share) as next_adoption_share_max,
        max(case when owned.is_last then pair.share end) as next_adoption_share,
        max(since_a.due_share) as next_adoption_share_due,
        max(case when owned.is_last then pair.transitions end) as next_adoptions_after_last
    from owned
    inner join pair_shares as pair
        on owned.days_before_as_of = pair.days_before_as_of
        and owned.category = pair.antecedent
        and pair.lag_bucket = 0
    left join pair_shares as since_a
        on owned.days_before_as_of = since_a.days_before_as_of
        and owned.category = since_a.antecedent
        and pair.consequent = since_a.consequent
        and owned.lag_bucket = since_a.lag_bucket
    group by owned.days_before_as_of, owned.customer_id, pair.consequent

),

next_purchases as (

    -- a candidate category is one not bought by the snapshot: it was bought in the next 90
    -- days exactly when the customer's first line in it falls in them
    select cutoffs.days_before_as_of, customer_categories.customer_id, customer_categories.category
    from {{ ref('int_customer_categories') }} as customer_categories
    inner join cutoffs
        on customer_categories.first_purchase_at > cutoffs.cutoff
        and customer_categories.first_purchase_at <= {{ dbt.dateadd('day', 90, 'cutoffs.cutoff') }}
    where cutoffs.days_before_as_of >= 90

),

final as (

    select
        affinity.days_before_as_of,
        affinity.customer_id,
        affinity.category,
        customer_stats.orders,
        customer_stats.orders_90d,
        last_adoption.categories_bought,
        customer_stats.spend,
        customer_stats.recency_days,
        customer_stats.frequency,
        customer_stats.recency_weeks,
        customer_stats.age_weeks,
        coalesce(affinity.confidence_max, 0) as confidence_max,
        coalesce(affinity.confidence_mean, 0) as confidence_mean,
        cast(coalesce(category_counts.buyers, 0) as double) / basket_totals.customers as category_support,
        last_adoption.days_since_last_adoption,
        coalesce(sequence.next_adoption_share, 0) as next_adoption_share,
        coalesce(sequence.next_adoption_share_due, 0) as next_adoption_share_due,
        coalesce(sequence.next_adoption_share_max, 0) as next_adoption_share_max,
        coalesce(sequence.next_adoptions_after_last, 0) as next_adoptions_after_last,
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
    inner join last_adoption
        on affinity.days_before_as_of = last_adoption.days_before_as_of
        and affinity.customer_id = last_adoption.customer_id
    left join category_counts
        on affinity.days_before_as_of = category_counts.days_before_as_of
        and affinity.category = category_counts.category
    left join sequence
        on affinity.days_before_as_of = sequence.days_before_as_of
        and affinity.customer_id = sequence.customer_id
        and affinity.category = sequence.category
    left join next_purchases
        on affinity.days_before_as_of = next_purchases.days_before_as_of
        and affinity.customer_id = next_purchases.customer_id
        and affinity.category = next_purchases.category

)

select * from final
