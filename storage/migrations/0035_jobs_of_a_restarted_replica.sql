-- compatible_from: 34
-- A replica that starts again under the id of a run that died (a container restarted in its
-- pod: the same host name, and process id 1) returns that run's jobs to the queue at once
-- instead of leaving them to their leases' end (60 s by default), as ReleaseJob returns one:
-- unleased, due as before, attempts unchanged, claimable by any replica with the next fencing
-- token, so a write of the dead run could not land. Only leases in force that end before
-- p_ending_before: the new run's start plus its lease duration, which spares the leases the new
-- run has taken itself. Wakes every replica's engine (NOTIFY acmevault_jobs) when it released
-- any. A new function only, which no earlier binary calls.
CREATE FUNCTION av_release_jobs_of(p_owner text, p_ending_before timestamptz,
                                   p_now timestamptz)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
  released integer;
BEGIN
  UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL, updated_at = p_now
  WHERE lease_owner = p_owner AND failed_at IS NULL
    AND lease_expires_at > p_now AND lease_expires_at < p_ending_before;
  GET DIAGNOSTICS released = ROW_COUNT;
  IF released > 0 THEN
    PERFORM pg_notify('acmevault_jobs', 'released');
  END IF;
  RETURN released;
END $$;

CALL av_give_to_definer(ARRAY['av_release_jobs_of'], 'acmevault_app');
