{#-
  Overrides of dbt-spark's cross-database macros, so the same models give the same numbers on
  Spark as on DuckDB. adapter.dispatch looks in the root project first.
-#}

{#-
  dbt-spark's dateadd goes through to_unix_timestamp, which drops the fraction of a second
  (as_of is the run's start, to the microsecond). timestampadd keeps it; the session time zone
  is UTC (profiles.yml), so a day is always 24 hours, as on DuckDB.
-#}
{% macro spark__dateadd(datepart, interval, from_date_or_timestamp) -%}
    {%- set unit = datepart | lower -%}
    {%- if unit not in ('year', 'quarter', 'month', 'week', 'day', 'hour', 'minute', 'second') -%}
        {{ exceptions.raise_compiler_error("dateadd: datepart " ~ datepart ~ " is not supported on Spark") }}
    {%- endif -%}
    timestampadd({{ unit | upper }}, cast({{ interval }} as bigint), {{ from_date_or_timestamp }})
{%- endmacro %}

{#-
  Whole days between the calendar days (UTC) of two dates or timestamps, as a BIGINT like
  DuckDB's date_diff (Spark's datediff returns INT). Other dateparts keep dbt-spark's macro.
-#}
{% macro spark__datediff(first_date, second_date, datepart) -%}
    {%- if datepart | lower == 'day' -%}
        cast(datediff(to_date({{ second_date }}), to_date({{ first_date }})) as bigint)
    {%- else -%}
        {{ dbt.spark__datediff(first_date, second_date, datepart) }}
    {%- endif -%}
{%- endmacro %}

{#-
  Contract types are declared once, in DuckDB's names. On Spark a contract checks the names
  Spark gives the same values: VARCHAR is STRING, and a sum of integers is a BIGINT where
  DuckDB makes it a HUGEINT.
-#}
{% macro contract_data_type(data_type) -%}
    {{ return(adapter.dispatch('contract_data_type')(data_type)) }}
{%- endmacro %}

{% macro default__contract_data_type(data_type) -%}
    {{ return(data_type) }}
{%- endmacro %}

{% macro spark__contract_data_type(data_type) -%}
    {%- set spark_names = {'varchar': 'string', 'text': 'string', 'hugeint': 'bigint'} -%}
    {{ return(spark_names.get(data_type | trim | lower, data_type)) }}
{%- endmacro %}

{#- dbt's empty-schema query for a contract, with the types in Spark's names. -#}
{% macro spark__get_empty_schema_sql(columns) -%}
    {%- set spark_columns = {} -%}
    {%- for name, column in columns.items() -%}
        {%- set spark_column = column.copy() -%}
        {%- if column.get('data_type') is not none -%}
            {%- do spark_column.update({'data_type': contract_data_type(column['data_type'])}) -%}
        {%- endif -%}
        {%- do spark_columns.update({name: spark_column}) -%}
    {%- endfor -%}
    {{ return(dbt.default__get_empty_schema_sql(spark_columns)) }}
{%- endmacro %}

{#-
  Seed rows as SQL literals. dbt-spark's session connection pastes bindings into the SQL
  unescaped, so "People's Republic" breaks the statement and an empty cell becomes the string
  'None'; here quotes are escaped and an empty cell is NULL, as on DuckDB.
-#}
{% macro spark__load_csv_rows(model, agate_table) -%}
    {%- set column_override = model['config'].get('column_types', {}) -%}
    {%- set types = [] -%}
    {%- for col_name in agate_table.column_names -%}
        {%- do types.append(column_override.get(col_name, adapter.convert_type(agate_table, loop.index0))) -%}
    {%- endfor -%}
    {%- set statements = [] -%}
    {%- for chunk in agate_table.rows | batch(get_batch_size()) -%}
        {%- set sql -%}
            insert into {{ this.render() }} values
            {% for row in chunk -%}
                ({%- for value in row -%}
                    cast({{ spark_seed_literal(value) }} as {{ types[loop.index0] }})
                    {%- if not loop.last %}, {% endif -%}
                {%- endfor -%})
                {%- if not loop.last %},{% endif %}
            {% endfor %}
        {%- endset -%}
        {%- do adapter.add_query(sql, abridge_sql_log=True) -%}
        {%- do statements.append(sql) if loop.first -%}
    {%- endfor -%}
    {{ return(statements[0] if statements else '') }}
{%- endmacro %}

{% macro spark_seed_literal(value) -%}
    {%- if value is none -%}
        null
    {%- elif value is number and value is not boolean -%}
        {{ value }}
    {%- else -%}
        '{{ value | string | replace("\\", "\\\\") | replace("'", "\\'") }}'
    {%- endif -%}
{%- endmacro %}
