-- One row per (snapshot, customer, category the customer had not bought by the snapshot): the
-- candidate rows of int_cross_sell_features, with the customer-level confidence of A -> B over
-- the categories A the customer had bought. A table of its own, so the features' joins are
-- planned against known row counts: in one query they held ~3.4 GB for a 20,000-customer
-- marketplace (70 categories); split, 1.4 GB.
with

categories as (

    select distinct category from {{ ref('dim_product') }}

),

{{ snapshot_history() }},

customers as (

    select distinct days_before_as_of, customer_id from bought

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
        cast(pair_counts.both_ as double) / category_counts.buyers as confidence
    from pair_counts
    inner join category_counts
        on pair_counts.days_before_as_of = category_counts.days_before_as_of
        and pair_counts.antecedent = category_counts.category

),

candidates as (

    select customers.days_before_as_of, customers.customer_id, categories.category
    from customers
    cross join categories
    where not exists (
        select 1 from bought
        where bought.days_before_as_of = customers.days_before_as_of
            and bought.customer_id = customers.customer_id
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

)

select * from affinity
