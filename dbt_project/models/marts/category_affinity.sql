-- Association rules A -> B between categories at two basket levels: everything a customer
-- bought up to as_of, and one order. Standard definitions (as mlxtend's association_rules):
-- support = P(A and B), confidence = P(B | A), lift = confidence / P(B),
-- leverage = support - P(A) P(B), conviction = (1 - P(B)) / (1 - confidence).
-- Each basket level is counted from its own `<level>_baskets`: one self-join over the union of
-- both levels (keyed by level and basket) ran out of DuckDB's 2 GB at 5M customers.
{%- set levels = ['customer', 'order'] %}

with

categories as (

    select distinct category from {{ ref('dim_product') }}

),

customer_baskets as (

    select customer_id as basket_id, category from {{ ref('int_customer_categories') }}

),

order_baskets as (

    select distinct order_id as basket_id, category from {{ ref('fct_purchase') }}

),

basket_totals as (
    {% for level in levels %}
    select '{{ level }}' as basket_level, count(distinct basket_id) as basket_count
    from {{ level }}_baskets
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}

),

item_counts as (
    {% for level in levels %}
    select '{{ level }}' as basket_level, category, count(*) as item_count
    from {{ level }}_baskets
    group by category
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}

),

pair_counts as (
    {% for level in levels %}
    select
        '{{ level }}' as basket_level,
        antecedents.category as antecedent,
        consequents.category as consequent,
        count(*) as pair_count
    from {{ level }}_baskets as antecedents
    inner join {{ level }}_baskets as consequents
        on antecedents.basket_id = consequents.basket_id
        and antecedents.category <> consequents.category
    group by antecedents.category, consequents.category
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}

),

all_pairs as (

    select
        basket_totals.basket_level,
        basket_totals.basket_count,
        a.category as antecedent,
        b.category as consequent
    from basket_totals
    cross join categories as a
    cross join categories as b
    where a.category <> b.category

),

counted as (

    select
        all_pairs.basket_level,
        all_pairs.antecedent,
        all_pairs.consequent,
        all_pairs.basket_count,
        coalesce(antecedent_counts.item_count, 0) as antecedent_count,
        coalesce(consequent_counts.item_count, 0) as consequent_count,
        coalesce(pair_counts.pair_count, 0) as pair_count
    from all_pairs
    left join item_counts as antecedent_counts
        on all_pairs.basket_level = antecedent_counts.basket_level
        and all_pairs.antecedent = antecedent_counts.category
    left join item_counts as consequent_counts
        on all_pairs.basket_level = consequent_counts.basket_level
        and all_pairs.consequent = consequent_counts.category
    left join pair_counts
        on all_pairs.basket_level = pair_counts.basket_level
        and all_pairs.antecedent = pair_counts.antecedent
        and all_pairs.consequent = pair_counts.consequent

),

measured as (

    select
        counted.*,
        cast(antecedent_count as double) / basket_count as antecedent_support,
        cast(consequent_count as double) / basket_count as consequent_support,
        cast(pair_count as double) / basket_count as support,
        cast(pair_count as double) / nullif(antecedent_count, 0) as confidence
    from counted

),

final as (

    select
        basket_level,
        antecedent,
        consequent,
        basket_count,
        antecedent_count,
        consequent_count,
        pair_count,
        antecedent_support,
        consequent_support,
        support,
        confidence,
        confidence / nullif(consequent_support, 0) as lift,
        support - antecedent_support * consequent_support as leverage,
        case
            when confidence < 1 then (1 - consequent_support) / (1 - confidence)
        end as conviction
    from measured

)

select * from final
