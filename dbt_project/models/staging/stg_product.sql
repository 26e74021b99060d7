with

source as (

    select * from {{ source('retail', 'product') }}

),

renamed as (

    select
        -- ids
        product_id,

        -- text
        product_name,
        product_category as category,

        -- numerics
        price as list_price,

        -- timestamps
        updated_at

    from source

)

select * from renamed
