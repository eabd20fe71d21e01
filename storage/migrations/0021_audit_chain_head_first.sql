-- compatible_from: 20
-- The audit chain's trigger (0005), the same chain with one statement fewer per row: the
-- tenant's head is locked first and made only when the tenant has none (its first row), where
-- 0005 tried to insert it before every row (an INSERT ... ON CONFLICT DO NOTHING per audit row,
-- measured as the costliest statement of the trigger: about 2.8 ms of PostgreSQL's time per
-- certificate with 13 audit rows, docs/benchmarks.md). Rows, hashes and the lock held until
-- the transaction ends are as before, so an older binary cannot tell. Replacing a
-- definer-owned function takes the definer's rights for the moment, as in 0008.
DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    GRANT acmevault_definer TO CURRENT_USER;
  END IF;
END $$;

CREATE OR REPLACE FUNCTION av_audit_chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
  head audit_heads%ROWTYPE;
BEGIN
  SELECT * INTO head FROM audit_heads WHERE tenant_id = NEW.tenant_id FOR UPDATE;
  IF NOT FOUND THEN
    -- The tenant's first row (two first rows at once: one inserts, the other waits and locks).
    INSERT INTO audit_heads (tenant_id, seq, hash)
    VALUES (NEW.tenant_id, 0, decode(repeat('00', 32), 'hex'))
    ON CONFLICT (tenant_id) DO NOTHING;
    SELECT * INTO head FROM audit_heads WHERE tenant_id = NEW.tenant_id FOR UPDATE;
  END IF;
  NEW.seq := head.seq + 1;
  NEW.prev_hash := head.hash;
  NEW.hash := av_audit_digest(NEW);
  UPDATE audit_heads SET seq = NEW.seq, hash = NEW.hash WHERE tenant_id = NEW.tenant_id;
  RETURN NEW;
END $$;

DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    REVOKE acmevault_definer FROM CURRENT_USER;
  END IF;
END $$;
