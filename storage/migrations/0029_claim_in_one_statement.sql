-- compatible_from: 28
-- A claim in one statement and one round trip. av_claim_jobs (0010) returns the claimed rows;
-- the engine then asked, in a second statement, when something is due next and whether due
-- jobs were left, and both ran in a transaction block: BEGIN, the claim, the question, COMMIT,
-- four round trips per claim (about one claim per certificate, docs/benchmarks.md). This
-- function returns the claimed rows, then one more row with no job that answers the question,
-- asked after the claim so that the jobs leased just now are no longer due (each statement of
-- a PL/pgSQL function sees the function's own writes). One statement runs in a transaction of
-- its own, so it needs no block, and the advisory lock av_claim_jobs takes is held to its end.
-- A new function only, which no earlier binary calls.
CREATE FUNCTION av_claim_jobs_and_next(p_owner text, p_now timestamptz, p_until timestamptz,
                                       p_limit integer, p_per_tenant integer, p_per_ca integer,
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
           EXISTS (SELECT 1 FROM av_jobs_due(p_now) d WHERE d.kind = ANY (p_kinds));
END $$;

CALL av_give_to_definer(ARRAY['av_claim_jobs_and_next'], 'acmevault_app');
