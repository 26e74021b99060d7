-- The baseline for benchmarks/pipeline_bench.py: the same marts as the pipeline, from the same
-- landing files, in one hand-written DuckDB script with no framework around it. It applies the
-- same contract rules (keys, ranges, references, as_of, newest row wins) but keeps no
-- quarantine, no tests and no metadata. {data_dir} and {as_of} are filled in by the benchmark.

CREATE OR REPLACE TABLE customers AS
SELECT * EXCLUDE (rn) FROM (
    SELECT *, row_number() OVER (PARTITION BY customer_id ORDER BY updated_at DESC) AS rn
    FROM read_csv('{data_dir}/customer_info.csv', types = {{'income': 'DOUBLE'}})
    WHERE customer_id IS NOT NULL
)
WHERE rn = 1;

CREATE OR REPLACE TABLE products AS
SELECT product_id, product_name, product_category AS category, price
FROM read_csv('{data_dir}/product.csv');

CREATE OR REPLACE TABLE lines AS
SELECT l.purchase_id, l.order_id, l.customer_id, l.product_id, p.category, l.channel, l.is_deal,
       l.quantity, l.unit_price, l.quantity * l.unit_price AS amount, l.purchase_ts,
       CAST(l.purchase_ts AS DATE) AS purchase_date
FROM read_csv('{data_dir}/purchase.csv') l
JOIN products p USING (product_id)
SEMI JOIN customers c USING (customer_id)
WHERE l.quantity > 0 AND l.unit_price > 0 AND l.unit_price <= 3.0 * p.price
  AND l.purchase_ts <= TIMESTAMP '{as_of}';

CREATE OR REPLACE TABLE orders AS
SELECT order_id, customer_id, min(channel) AS channel, bool_or(is_deal) AS is_deal,
       sum(amount) AS order_amount, min(purchase_ts) AS ordered_at,
       min(purchase_date) AS order_date
FROM lines GROUP BY ALL;

CREATE OR REPLACE TABLE dim_customer AS
SELECT c.*, year(TIMESTAMP '{as_of}') - birth_year AS age,
       CASE WHEN income < 30000 THEN 'under 30k' WHEN income < 60000 THEN '30k-60k'
            WHEN income < 90000 THEN '60k-90k' WHEN income IS NULL THEN 'unknown'
            ELSE '90k and over' END AS income_band
FROM customers c;

CREATE OR REPLACE TABLE customer_purchase_metrics AS
WITH o AS (
    SELECT customer_id, count(*) AS lifetime_orders,
           count(*) FILTER (WHERE ordered_at > TIMESTAMP '{as_of}' - INTERVAL 365 DAY) AS orders_365d,
           sum(order_amount) AS total_spend,
           sum(order_amount) FILTER (WHERE ordered_at > TIMESTAMP '{as_of}' - INTERVAL 365 DAY)
               AS spend_365d,
           min(ordered_at) AS first_purchase_at, max(ordered_at) AS last_purchase_at
    FROM orders GROUP BY customer_id
)
SELECT c.customer_id, coalesce(o.lifetime_orders, 0) AS lifetime_orders,
       coalesce(o.orders_365d, 0) AS orders_365d, coalesce(o.total_spend, 0) AS total_spend,
       coalesce(o.spend_365d, 0) AS spend_365d, o.total_spend / o.lifetime_orders AS avg_order_value,
       o.first_purchase_at, o.last_purchase_at,
       date_diff('day', o.last_purchase_at, TIMESTAMP '{as_of}') AS recency_days,
       date_diff('day', c.signup_date, TIMESTAMP '{as_of}') AS tenure_days,
       (SELECT count(DISTINCT category) FROM lines l WHERE l.customer_id = c.customer_id)
           AS categories_purchased
FROM customers c LEFT JOIN o USING (customer_id);

CREATE OR REPLACE TABLE customer_category_profile AS
WITH s AS (
    SELECT customer_id,
           sum(amount) FILTER (WHERE category = 'Wines') AS mntwines,
           sum(amount) FILTER (WHERE category = 'Meats') AS mntmeatproducts,
           sum(amount) FILTER (WHERE category = 'Fish') AS mntfishproducts,
           sum(amount) FILTER (WHERE category = 'Sweets') AS mntsweetproducts,
           sum(amount) FILTER (WHERE category = 'Gold') AS mntgoldprods,
           sum(amount) FILTER (WHERE category = 'Fruits') AS mntfruits
    FROM lines GROUP BY customer_id
), ch AS (
    SELECT customer_id, count(*) FILTER (WHERE channel = 'web') AS web,
           count(*) FILTER (WHERE channel = 'catalog') AS catalog,
           count(*) FILTER (WHERE channel = 'store') AS store,
           count(*) FILTER (WHERE is_deal) AS deals
    FROM orders GROUP BY customer_id
)
SELECT m.customer_id, s.* EXCLUDE (customer_id), ch.* EXCLUDE (customer_id),
       m.recency_days AS recency, ch.web + ch.catalog + ch.store AS purchases,
       m.total_spend AS spend,
       CASE WHEN m.recency_days < 30 AND m.total_spend > 500 THEN 0.9
            WHEN m.recency_days BETWEEN 30 AND 90 AND m.total_spend BETWEEN 100 AND 500 THEN 0.5
            WHEN m.recency_days > 90 OR m.total_spend < 100 THEN 0.2 ELSE 0.1 END
           AS churn_probability,
       (0.25 * coalesce(mntwines, 0) + 0.2 * coalesce(mntmeatproducts, 0)
        + 0.15 * coalesce(mntfishproducts, 0) + 0.1 * coalesce(mntsweetproducts, 0)
        + 0.3 * coalesce(mntgoldprods, 0) + 0.2 * coalesce(mntfruits, 0))
       / (coalesce(ch.web + ch.catalog + ch.store, 0) + 1) AS dataos_cross_sell_score
FROM customer_purchase_metrics m LEFT JOIN s USING (customer_id) LEFT JOIN ch USING (customer_id);

CREATE OR REPLACE TABLE category_affinity AS
WITH b AS (
    SELECT DISTINCT 'customer' AS level, customer_id AS id, category FROM lines
    UNION ALL SELECT DISTINCT 'order', order_id, category FROM lines
), n AS (SELECT level, count(DISTINCT id) AS n FROM b GROUP BY level),
i AS (SELECT level, category, count(*) AS k FROM b GROUP BY ALL),
p AS (
    SELECT x.level, x.category AS a, y.category AS c, count(*) AS k
    FROM b x JOIN b y ON x.level = y.level AND x.id = y.id AND x.category <> y.category
    GROUP BY ALL
)
SELECT p.level, p.a, p.c, p.k / n.n AS support, p.k / ia.k AS confidence,
       (p.k / ia.k) / (ic.k / n.n) AS lift
FROM p JOIN n USING (level) JOIN i ia ON ia.level = p.level AND ia.category = p.a
JOIN i ic ON ic.level = p.level AND ic.category = p.c;

CREATE OR REPLACE TABLE customer_rfm AS
WITH d AS (
    SELECT customer_id, order_date, sum(order_amount) AS v,
           row_number() OVER (PARTITION BY customer_id ORDER BY order_date) AS k
    FROM orders GROUP BY customer_id, order_date
)
SELECT customer_id, count(*) - 1 AS frequency,
       date_diff('day', min(order_date), max(order_date)) / 7.0 AS recency_weeks,
       date_diff('day', min(order_date), CAST(TIMESTAMP '{as_of}' AS DATE)) / 7.0 AS age_weeks,
       avg(v) FILTER (WHERE k > 1) AS monetary_value, sum(v) AS total_spend
FROM d GROUP BY customer_id;

CREATE OR REPLACE TABLE cross_sell_features AS
WITH cut AS (
    SELECT d AS days_before, TIMESTAMP '{as_of}' - to_days(d) AS t FROM (VALUES (0), (90), (180)) v(d)
), h AS (SELECT cut.days_before, cut.t, lines.* FROM lines JOIN cut ON lines.purchase_ts <= cut.t),
bought AS (SELECT DISTINCT days_before, customer_id, category FROM h),
cs AS (
    SELECT days_before, customer_id, count(DISTINCT order_id) AS orders,
           count(DISTINCT order_id) FILTER (WHERE purchase_ts > t - INTERVAL 90 DAY) AS orders_90d,
           count(DISTINCT category) AS categories_bought,
           date_diff('day', max(purchase_ts), max(t)) AS recency_days,
           count(DISTINCT purchase_date) - 1 AS frequency
    FROM h GROUP BY ALL
), nb AS (SELECT days_before, count(DISTINCT customer_id) AS n FROM bought GROUP BY ALL),
cc AS (SELECT days_before, category, count(*) AS k FROM bought GROUP BY ALL),
conf AS (
    SELECT x.days_before, x.category AS a, y.category AS c, count(*) / any_value(cc.k) AS confidence
    FROM bought x JOIN bought y USING (days_before, customer_id)
    JOIN cc ON cc.days_before = x.days_before AND cc.category = x.category
    WHERE x.category <> y.category GROUP BY ALL
), cand AS (
    SELECT cs.days_before, cs.customer_id, cats.category
    FROM cs CROSS JOIN (SELECT DISTINCT category FROM products) cats
    ANTI JOIN bought USING (days_before, customer_id, category)
), aff AS (
    SELECT cand.days_before, cand.customer_id, cand.category,
           max(conf.confidence) AS confidence_max, avg(conf.confidence) AS confidence_mean
    FROM cand JOIN bought b USING (days_before, customer_id)
    LEFT JOIN conf ON conf.days_before = cand.days_before AND conf.a = b.category
        AND conf.c = cand.category
    GROUP BY ALL
), nxt AS (
    SELECT DISTINCT cut.days_before, lines.customer_id, lines.category
    FROM lines JOIN cut ON lines.purchase_ts > cut.t AND lines.purchase_ts <= cut.t + INTERVAL 90 DAY
)
SELECT aff.*, cs.orders, cs.orders_90d, cs.categories_bought, cs.recency_days, cs.frequency,
       cc.k / nb.n AS category_support,
       CASE WHEN aff.days_before = 0 THEN NULL WHEN nxt.category IS NULL THEN 0 ELSE 1 END AS label
FROM aff JOIN cs USING (days_before, customer_id) JOIN nb USING (days_before)
LEFT JOIN cc USING (days_before, category) LEFT JOIN nxt USING (days_before, customer_id, category);
