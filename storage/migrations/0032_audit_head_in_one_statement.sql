-- compatible_from: 31
-- The audit chain's trigger (0005, 0021), the same rows with one statement per row fewer. It
-- locked the tenant's head with SELECT ... FOR UPDATE, computed the row's hash, then updated
-- the head: two statements through SPI for every audit row, which with the digest made the
-- trigger most of what an audit row costs (issue 10's floor: about 0.8 ms of PostgreSQL's CPU
-- per certificate for 11 rows, docs/benchmarks.md). Now one UPDATE of the head moves it on and
-- returns what the row needs: its SET expressions see the head as it was (the previous hash,
-- kept in the new column prev_hash, and the previous seq), the row's hash is computed from
-- them there, and RETURNING hands back seq, prev_hash and hash. The UPDATE holds the head's
-- row lock to the end of the transaction as the FOR UPDATE did; a second writer waits for it
-- and, under READ COMMITTED, recomputes its SET expressions from the head the first one left,
-- so appends stay serialised per tenant and the chain is the same bytes as before. A tenant's
-- first row still makes the head. audit_heads is read by no binary but through seq and hash,
-- and the new column is nullable (no rewrite): older binaries are admitted. Replacing the
-- definer-owned trigger function takes the definer's rights for the moment, as in 0008.
DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    GRANT acmevault_definer TO CURRENT_USER;
  END IF;
END $$;

ALTER TABLE audit_heads ADD COLUMN prev_hash bytea;

-- The hash of audit row `a` as the chain's row number `seq` after a row whose hash is `prev`:
-- av_audit_digest of `a` with those two fields set.
CREATE FUNCTION av_audit_link(a audit_log, seq bigint, prev bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
  a.seq := seq;
  a.prev_hash := prev;
  RETURN sha256(av_audit_encoding(a));
END $$;

CREATE OR REPLACE FUNCTION av_audit_chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
  FOR attempt IN 1..2 LOOP
    UPDATE audit_heads h
    SET prev_hash = h.hash, seq = h.seq + 1, hash = av_audit_link(NEW, h.seq + 1, h.hash)
    WHERE h.tenant_id = NEW.tenant_id
    RETURNING h.seq, h.prev_hash, h.hash INTO NEW.seq, NEW.prev_hash, NEW.hash;
    EXIT WHEN FOUND;
    -- The tenant's first row makes its head, then moves it (two first rows at once: one
    -- inserts, the other waits and moves the head the first one made).
    INSERT INTO audit_heads (tenant_id, seq, hash)
    VALUES (NEW.tenant_id, 0, decode(repeat('00', 32), 'hex'))
    ON CONFLICT (tenant_id) DO NOTHING;
  END LOOP;
  RETURN NEW;
END $$;

DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    REVOKE acmevault_definer FROM CURRENT_USER;
  END IF;
END $$;
