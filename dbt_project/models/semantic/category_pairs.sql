-- Category affinity for the semantic model, dated by the run's as_of.
select
    basket_level || '|' || antecedent || '|' || consequent as pair_id,
    basket_level,
    antecedent,
    consequent,
    support,
    confidence,
    lift,
    pair_count,
    cast({{ as_of() }} as date) as as_of_date
from {{ ref('category_affinity') }}
