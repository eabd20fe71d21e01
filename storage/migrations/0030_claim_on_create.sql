-- compatible_from: 29
-- A new order's job claimed by the replica that makes it, in the order's own transaction, when
-- a claim made then would take it: no job of the claimer's kinds is due and unleased, and
-- neither the tenant's nor the CA's bound is reached. Until now the job was made unleased and
-- a NOTIFY woke every replica's engine, whose claim (av_claim_jobs_and_next, the fair-claim
-- query) was the most expensive statement of an issuance (docs/benchmarks.md).
--
-- av_take_new_job answers whether the job about to be inserted may be leased to its maker. It
-- takes the claims' advisory lock, so the bounds hold exactly against every claim and every
-- other such insert (the lock is held to the end of the maker's transaction, whose remaining
-- statements travel with its COMMIT). When it answers true it records the tenant's turn as a
-- claim does, so round-robin fairness counts this service too. The caller inserts the job
-- itself (as the app role, under row security), leased or not as the answer says; the job is
-- not in the table yet when the function looks, so it is not a due job that waits.
-- A new function only, which no earlier binary calls.
CREATE FUNCTION av_take_new_job(p_tenant bigint, p_ca text, p_now timestamptz,
                                p_per_tenant integer, p_per_ca integer, p_kinds text[])
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
  -- "acmvjobs" as a big-endian int64, as in av_claim_jobs.
  PERFORM pg_advisory_xact_lock(7017572999732617843);
  IF NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = p_tenant AND t.disabled_at IS NULL) THEN
    RETURN false;
  END IF;
  IF EXISTS (SELECT 1 FROM jobs j JOIN tenants t ON t.id = j.tenant_id AND t.disabled_at IS NULL
             WHERE j.failed_at IS NULL AND j.not_before <= p_now
               AND (j.lease_expires_at IS NULL OR j.lease_expires_at <= p_now)
               AND j.kind = ANY (p_kinds)) THEN
    RETURN false;  -- a due job waits: the claims' fairness decides who goes first
  END IF;
  IF p_per_tenant > 0 AND (SELECT count(*) FROM jobs l
                           WHERE l.tenant_id = p_tenant AND l.failed_at IS NULL
                             AND l.lease_expires_at > p_now) >= p_per_tenant THEN
    RETURN false;
  END IF;
  IF p_ca <> '' AND p_per_ca > 0 AND (SELECT count(*) FROM jobs l
                                      WHERE l.ca = p_ca AND l.failed_at IS NULL
                                        AND l.lease_expires_at > p_now) >= p_per_ca THEN
    RETURN false;
  END IF;
  INSERT INTO job_turns (tenant_id, served) VALUES (p_tenant, nextval('job_turn_seq'))
  ON CONFLICT (tenant_id) DO UPDATE SET served = EXCLUDED.served;
  RETURN true;
END $$;

CALL av_give_to_definer(ARRAY['av_take_new_job'], 'acmevault_app');
