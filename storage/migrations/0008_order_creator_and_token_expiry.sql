-- An idempotency key binds its order for the identity that made it, for 24 hours, and not once
-- the order's certificate is revoked or expired (storage/store.h, OrderStore::CreateOrJoinOrder);
-- bearer tokens may expire.
--
-- No compatible_from line: a binary that knows only earlier migrations compares only the key (so
-- another host of the tenant could be handed a service-generated key) and, once keys are reused
-- after their 24 hours, would take any of several orders for a key.

-- Who made an order: the authenticated caller as the service names it in audit rows (a SPIFFE
-- ID or "token:<id>"). NULL for orders made before this migration: their keys bind for nobody.
-- The CHECK is NOT VALID so that adding it does not scan the table under its lock; it holds for
-- every row written from now on, and no earlier row has the column set.
ALTER TABLE orders
  ADD COLUMN created_by text,
  ADD CONSTRAINT orders_created_by_set CHECK (created_by <> '') NOT VALID;

-- The creator is part of the order's identity (0002's av_orders_guard covers the rest).
CREATE FUNCTION av_orders_creator_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.created_by IS DISTINCT FROM OLD.created_by THEN
    PERFORM av_refuse('order identity is immutable');
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER orders_creator_guard BEFORE UPDATE OF created_by ON orders
  FOR EACH ROW EXECUTE FUNCTION av_orders_creator_guard();

-- A key may now name several orders over time (a new one after 24 hours, or after its order's
-- certificate was revoked or expired). Which one binds is decided by the lookup query, on the
-- service's clock; what an index can still promise is one order in flight per tenant and key.
DROP INDEX orders_idempotency_key;
CREATE UNIQUE INDEX orders_idempotency_key_in_flight ON orders (tenant_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL AND state NOT IN ('valid', 'invalid');
CREATE INDEX orders_idempotency_key_recent ON orders (tenant_id, idempotency_key, created_at DESC)
  WHERE idempotency_key IS NOT NULL;

-- A bearer token may expire; a SPIFFE binding ends only by revocation (UnbindIdentity).
ALTER TABLE identities
  ADD COLUMN expires_at timestamptz,
  ADD CONSTRAINT identities_expiry_tokens_only
    CHECK (expires_at IS NULL OR token_sha256 IS NOT NULL) NOT VALID;

-- 0004's lookup with the service's clock: a token at or past its expires_at is not live.
CREATE FUNCTION av_authenticate(p_spiffe_id text, p_token_sha256 bytea, p_now timestamptz)
RETURNS TABLE (id bigint, tenant_id bigint, role text, spiffe_id text, bearer_token boolean,
               description text, created_at timestamptz, expires_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT i.id, i.tenant_id, i.role, i.spiffe_id, i.token_sha256 IS NOT NULL, i.description,
         i.created_at, i.expires_at
  FROM identities i JOIN tenants t ON t.id = i.tenant_id
  WHERE (i.spiffe_id = p_spiffe_id OR i.token_sha256 = p_token_sha256)
    AND i.revoked_at IS NULL AND t.disabled_at IS NULL
    AND (i.expires_at IS NULL OR i.expires_at > p_now)
$$;

-- A replica of the previous release, still running during the upgrade, calls 0004's two-argument
-- lookup, which knows no expiry: it now refuses every token that has one (fail closed). Replacing
-- a definer-owned function takes the definer's rights for the moment, as in 0006.
DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    GRANT acmevault_definer TO CURRENT_USER;
  END IF;
END $$;

CREATE OR REPLACE FUNCTION av_authenticate(p_spiffe_id text, p_token_sha256 bytea)
RETURNS TABLE (id bigint, tenant_id bigint, role text, spiffe_id text, bearer_token boolean,
               description text, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT i.id, i.tenant_id, i.role, i.spiffe_id, i.token_sha256 IS NOT NULL, i.description,
         i.created_at
  FROM identities i JOIN tenants t ON t.id = i.tenant_id
  WHERE (i.spiffe_id = p_spiffe_id OR i.token_sha256 = p_token_sha256)
    AND i.revoked_at IS NULL AND t.disabled_at IS NULL AND i.expires_at IS NULL
$$;

DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    REVOKE acmevault_definer FROM CURRENT_USER;
  END IF;
END $$;

CALL av_give_to_definer(ARRAY['av_authenticate'], 'acmevault_app');
