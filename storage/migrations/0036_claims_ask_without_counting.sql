-- compatible_from: 35
-- A claim's last question in fewer rows. av_claim_jobs_and_next (0029) answers, after the claim,
-- whether due jobs were left and when the next one is due. It asked the first by counting every
-- due job of every kind (av_jobs_due, made for the metrics) only to see whether one of the
-- claimer's kinds was among them, and the second with min() over the jobs due later, which
-- PL/pgSQL's plan for any p_now may take by a scan of them all. With thousands of jobs due (a
-- burst of orders waiting for a slow CA, each look not kept going back through the table) a
-- claim cost PostgreSQL 4.5 ms at 10,000 jobs, 3,000 of them due (docs/benchmarks.md). Now the
-- first is an EXISTS, which stops at the first due job it finds, and the second reads the first
-- such job by the jobs_next index (ORDER BY not_before LIMIT 1): the same answers, 2.1 ms there.
-- Bodies only; replacing definer-owned functions takes the definer's rights for the moment, as
-- in 0008.
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
  RETURN (SELECT j.not_before
          FROM jobs j JOIN tenants t ON t.id = j.tenant_id AND t.disabled_at IS NULL
          WHERE j.failed_at IS NULL AND j.not_before > p_now AND j.lease_owner IS NULL
            AND j.kind = ANY (p_kinds)
          ORDER BY j.not_before
          LIMIT 1);
END $$;

CREATE OR REPLACE FUNCTION av_claim_jobs_and_next(p_owner text, p_now timestamptz,
                                                  p_until timestamptz, p_limit integer,
                                                  p_per_tenant integer, p_per_ca integer,
                                                  p_kinds text[])
RETURNS TABLE (claim_position integer, claimed_job jobs, next_not_before timestamptz,
               left_due boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
  RETURN QUERY
    SELECT c.claim_position, c.claimed_job, NULL::timestamptz, NULL::boolean
    FROM av_claim_jobs(p_owner, p_now, p_until, p_limit, p_per_tenant, p_per_ca, p_kinds) c;
  RETURN QUERY
    SELECT NULL::integer, NULL::jobs, av_next_job_time(p_now, p_kinds),
           EXISTS (SELECT 1 FROM jobs j JOIN tenants t ON t.id = j.tenant_id
                                                      AND t.disabled_at IS NULL
                   WHERE j.failed_at IS NULL AND j.not_before <= p_now
                     AND (j.lease_expires_at IS NULL OR j.lease_expires_at <= p_now)
                     AND j.kind = ANY (p_kinds));
END $$;

DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    REVOKE acmevault_definer FROM CURRENT_USER;
  END IF;
END $$;
