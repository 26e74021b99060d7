with

source as (

    select * from {{ source('retail', 'customer_info') }}

),

renamed as (

    select
        -- ids
        customer_id,

        -- personal data (PII)
        trim(first_name) as first_name,
        trim(last_name) as last_name,
        lower(trim(email)) as email,
        trim(phone) as phone,

        -- demographics
        birth_year,
        education,
        marital_status,
        income,
        upper(trim(country)) as country_code,

        -- flags
        coalesce(
            email like '%_@_%._%' and email not like '% %' and email not like '%@%@%',
            false
        ) as has_valid_email,

        -- timestamps
        signup_date,
        updated_at

    from source

)

select * from renamed
