-- compatible_from: 21
-- av_ts and av_us (0001) convert between the service's microseconds and timestamptz in every
-- query. They were declared IMMUTABLE, but their bodies are only STABLE (timestamptz plus an
-- interval; extract from a timestamptz), and PostgreSQL inlines a SQL function only when its
-- body is no more volatile than its declaration: every call was a SQL function call, its body
-- parsed and planned again on each execution (a third of PostgreSQL's time on the read path,
-- docs/benchmarks.md "Read path"). Declared STABLE, as their bodies are, they are inlined into
-- each query. The values are the same: neither depends on the session's time zone (a
-- microsecond interval and the epoch are absolute), and neither is used by an index or a
-- constraint, which would need IMMUTABLE.
ALTER FUNCTION av_ts(bigint) STABLE;
ALTER FUNCTION av_us(timestamptz) STABLE;
