-- compatible_from: 23
-- SQL functions that PostgreSQL could not inline were parsed and planned again at every call:
-- a CHECK constraint's, a trigger's or a SECURITY DEFINER function's body gets no plan cache
-- of its own (a perf profile of IssueCertificate put them at a sixth of PostgreSQL's time,
-- docs/benchmarks.md). Same values, computed once planned:
-- * av_order_rank (the orders guard's trigger, every order update) was STRICT over a CASE, which
--   the planner may not inline; a NULL state matches no WHEN and gives NULL either way, so it is
--   declared CALLED ON NULL INPUT and inlined.
-- * av_identifiers_canonical (CHECK on orders and certificates: a subquery, never inlined), and
--   av_next_job_time and av_jobs_due (SECURITY DEFINER, never inlined; every claim) become
--   PL/pgSQL, which plans each statement once per connection. Their bodies are unchanged.
-- Replacing definer-owned functions takes the definer's rights for the moment, as in 0008.
ALTER FUNCTION av_order_rank(text) CALLED ON NULL INPUT;

CREATE OR REPLACE FUNCTION av_identifiers_canonical(ids text[]) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
BEGIN
  RETURN cardinality(ids) BETWEEN 1 AND 100
     AND ids = ARRAY(SELECT DISTINCT x COLLATE "C" FROM unnest(ids) AS x ORDER BY 1);
END $$;

DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    GRANT acmevault_definer TO CURRENT_USER;
  END IF;
END $$;

CREATE OR REPLACE FUNCTION av_next_job_time(p_now timestamptz, p_kinds text[]) RETURNS timestamptz
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
  RETURN (SELECT min(j.not_before)
          FROM jobs j JOIN tenants t ON t.id = j.tenant_id AND t.disabled_at IS NULL
          WHERE j.failed_at IS NULL AND j.not_before > p_now AND j.lease_owner IS NULL
            AND j.kind = ANY (p_kinds));
END $$;

CREATE OR REPLACE FUNCTION av_jobs_due(p_now timestamptz) RETURNS TABLE (kind text, due bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
  RETURN QUERY
  SELECT j.kind, count(*)
  FROM jobs j JOIN tenants t ON t.id = j.tenant_id AND t.disabled_at IS NULL
  WHERE j.failed_at IS NULL AND j.not_before <= p_now
    AND (j.lease_expires_at IS NULL OR j.lease_expires_at <= p_now)
  GROUP BY j.kind
  ORDER BY j.kind;
END $$;

DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    REVOKE acmevault_definer FROM CURRENT_USER;
  END IF;
END $$;
