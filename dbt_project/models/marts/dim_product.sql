with

products as (

    select * from {{ ref('stg_product') }}

),

final as (

    select
        -- ids
        product_id,

        -- text
        product_name,
        category,

        -- numerics
        list_price,

        -- timestamps
        updated_at

    from products

)

select * from final
