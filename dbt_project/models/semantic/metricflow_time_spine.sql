-- MetricFlow's daily time spine: one row per day over every date the product can hold.
with

days as (

    {{ dbt.date_spine('day', "cast('2000-01-01' as date)", "cast('2040-01-01' as date)") }}

)

select cast(date_day as date) as date_day
from days
