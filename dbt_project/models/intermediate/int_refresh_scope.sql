-- One row: how far this run's per-customer incremental models refresh (macros/refresh_scope.sql).
-- They are caught up to `caught_up_to`; this run takes them to `through_load_id`, the newest
-- load. Everyone is refreshed on the first build, or when purchases or products were fully
-- reloaded since (a full load records no per-key changes).
with

loads as (

    select * from {{ registry_loads() }}

),

scope as (

    select
        (select coalesce(max(load_id), 0) from loads) as through_load_id,
        {{ refresh_watermark() }} as caught_up_to

),

final as (

    select
        through_load_id,
        caught_up_to,
        caught_up_to is null or exists (
            select 1 from loads
            where loads.source in ('purchase', 'product')
                and loads.mode = 'full'
                and loads.load_id > scope.caught_up_to
        ) as all_customers
    from scope

)

select * from final
