-- Association rules A -> B between categories at two basket levels: everything a customer
-- bought up to as_of, and one order. Standard definitions (as mlxtend's association_rules):
-- support = P(A and B), confidence = P(B | A), lift = confidence / P(B),
-- leverage = support - P(A) P(B), conviction = (1 - P(B)) / (1 - confidence).
-- A customer basket is everything a customer bought (int_customer_categories); an order basket
-- is a customer's order, counted per customer in int_customer_order_categories, so a daily run
-- re-counts only the customers it touched. (One self-join over both levels' baskets ran out
-- of DuckDB's 2 GB at 5M customers.)
with

categories as (

    select distinct category from {{ ref('dim_product') }}

),

customer_categories as (

    select customer_id, category from {{ ref('int_customer_categories') }}

),

-- per level, the baskets, and per (A, B) the baskets that hold both (A = B: that hold A)
basket_totals as (

    select 'customer' as basket_level, count(distinct customer_id) as basket_count
    from customer_categories
    union all
    select 'order' as basket_level, count(*) as basket_count
    from {{ ref('int_orders') }}

),

co_occurrences as (

    select
        'customer' as basket_level,
        antecedents.category as antecedent,
        consequents.category as consequent,
        count(*) as baskets
    from customer_categories as antecedents
    inner join customer_categories as consequents
        on antecedents.customer_id = consequents.customer_id
    group by antecedents.category, consequents.category
    union all
    select
        'order' as basket_level,
        antecedent,
        consequent,
        cast(sum(orders) as {{ dbt.type_bigint() }}) as baskets
    from {{ ref('int_customer_order_categories') }}
    group by antecedent, consequent

),

item_counts as (

    select basket_level, antecedent as category, baskets as item_count
    from co_occurrences
    where antecedent = consequent

),

pair_counts as (

    select basket_level, antecedent, consequent, baskets as pair_count
    from co_occurrences
    where antecedent <> consequent

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
