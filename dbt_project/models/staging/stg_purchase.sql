with

source as (

    select * from {{ source('retail', 'purchase') }}

),

renamed as (

    select
        -- ids
        purchase_id,
        order_id,
        customer_id,
        product_id,

        -- numerics
        quantity,
        unit_price,
        quantity * unit_price as amount,

        -- categorical
        channel,
        is_deal,

        -- timestamps
        purchase_ts,
        cast(purchase_ts as date) as purchase_date,
        updated_at

    from source

)

select * from renamed
-- one reference time: lines after as_of do not exist yet for this run
where purchase_ts <= {{ as_of() }}
