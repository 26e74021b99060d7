with

customers as (

    select * from {{ ref('stg_customer_info') }}

),

regions as (

    select * from {{ ref('country_regions') }}

),

aged as (

    select
        customers.*,
        extract(year from {{ as_of() }}) - birth_year as age
    from customers

),

enriched as (

    select
        -- ids
        aged.customer_id,

        -- personal data (PII, masked by the delivery policies)
        aged.first_name,
        aged.last_name,
        aged.email,
        aged.phone,

        -- demographics
        aged.birth_year,
        aged.age,
        case
            when aged.age is null then 'unknown'
            when aged.age < 25 then '18-24'
            when aged.age < 35 then '25-34'
            when aged.age < 45 then '35-44'
            when aged.age < 55 then '45-54'
            when aged.age < 65 then '55-64'
            else '65+'
        end as age_group,
        aged.education,
        aged.marital_status,
        aged.income,
        case
            when aged.income is null then 'unknown'
            when aged.income < 30000 then 'under 30k'
            when aged.income < 60000 then '30k-60k'
            when aged.income < 90000 then '60k-90k'
            else '90k and over'
        end as income_band,

        -- geography
        aged.country_code,
        coalesce(regions.country_name, 'unknown') as country_name,
        coalesce(regions.region, 'unknown') as region,

        -- flags
        aged.has_valid_email,

        -- timestamps
        aged.signup_date,
        aged.updated_at

    from aged
    left join regions
        on aged.country_code = regions.country_code

)

select * from enriched
