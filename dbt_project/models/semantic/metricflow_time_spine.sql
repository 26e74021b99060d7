-- MetricFlow's daily time spine: one row per day over every date the product can hold.
select cast(d as date) as date_day
from range(date '2000-01-01', date '2040-01-01', interval 1 day) as t(d)
