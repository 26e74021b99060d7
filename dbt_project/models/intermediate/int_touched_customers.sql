-- The customers whose purchase lines changed since the incremental models last caught up: a
-- line added, corrected or taken back, or a line of a product whose catalogue row changed.
with

scope as (

    select * from {{ ref('int_refresh_scope') }}

),

changes as (

    select changes.*
    from {{ registry_changes() }} as changes
    cross join scope
    where changes.load_id > coalesce(scope.caught_up_to, -1)

),

changed_lines as (

    select customer_id from changes
    where source = 'purchase' and customer_id is not null

),

buyers_of_changed_products as (

    select purchases.customer_id
    from {{ source('retail', 'purchase') }} as purchases
    inner join changes
        on changes.source = 'product'
        and changes.key = purchases.product_id

)

select customer_id from changed_lines
union
select customer_id from buyers_of_changed_products
