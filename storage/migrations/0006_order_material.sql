-- Order finalization material (DESIGN.md §4: a replica killed anywhere leaves an order another
-- resumes). An order may carry the CSR it will be finalized with and, when the service generated
-- it, the certificate's private key, sealed exactly as a certificate's key is
-- (storage/envelope.h, context "order-key|tenant=T|order=O"). Both are written with the order
-- and never change; KEK rotation re-wraps only the data key, also of a terminal order.

ALTER TABLE orders
  ADD COLUMN csr_der bytea CONSTRAINT orders_csr_der_size
    CHECK (octet_length(csr_der) BETWEEN 1 AND 16384),
  ADD COLUMN kek_id text,
  ADD COLUMN wrapped_data_key bytea CHECK (octet_length(wrapped_data_key) = 60),
  ADD COLUMN sealed_private_key bytea CHECK (octet_length(sealed_private_key) > 28),
  ADD CONSTRAINT orders_sealed_key_whole
    CHECK ((kek_id IS NULL) = (wrapped_data_key IS NULL)
       AND (kek_id IS NULL) = (sealed_private_key IS NULL));
CREATE INDEX orders_kek ON orders (kek_id) WHERE kek_id IS NOT NULL;

-- 0002's guard, with the material immutable and a terminal order open to re-wrapping only.
CREATE OR REPLACE FUNCTION av_orders_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  rewrapped orders;
BEGIN
  IF NEW.id <> OLD.id OR NEW.tenant_id <> OLD.tenant_id OR NEW.account_id <> OLD.account_id
     OR NEW.identifiers <> OLD.identifiers OR NEW.identifiers_hash <> OLD.identifiers_hash
     OR NEW.idempotency_key IS DISTINCT FROM OLD.idempotency_key
     OR NEW.created_at <> OLD.created_at THEN
    PERFORM av_refuse('order identity is immutable');
  END IF;
  -- Only the KEK id and the wrapped data key may change (re-wrap); the CSR and the sealed key
  -- never do, and a key is neither added nor removed.
  IF NEW.csr_der IS DISTINCT FROM OLD.csr_der
     OR NEW.sealed_private_key IS DISTINCT FROM OLD.sealed_private_key
     OR (NEW.kek_id IS NULL) <> (OLD.kek_id IS NULL) THEN
    PERFORM av_refuse('order finalization material is immutable');
  END IF;
  -- Stored before finalize, the order URL is how any replica resumes the order: it must never
  -- be lost or replaced.
  IF OLD.acme_url IS NOT NULL AND NEW.acme_url IS DISTINCT FROM OLD.acme_url THEN
    PERFORM av_refuse('order ACME URL is immutable once set');
  END IF;
  rewrapped := OLD;
  rewrapped.kek_id := NEW.kek_id;
  rewrapped.wrapped_data_key := NEW.wrapped_data_key;
  IF OLD.state IN ('valid', 'invalid') AND NEW IS DISTINCT FROM rewrapped THEN
    PERFORM av_refuse('order is ' || OLD.state);
  END IF;
  IF av_order_rank(NEW.state) < av_order_rank(OLD.state) THEN
    PERFORM av_refuse('order cannot go from ' || OLD.state || ' to ' || NEW.state);
  END IF;
  IF NEW.fencing_token < OLD.fencing_token THEN
    PERFORM av_refuse('fencing token cannot decrease');
  END IF;
  RETURN NEW;
END $$;

-- acmevault_definer read orders through a table-wide grant (0004), which would now reach the
-- sealed key. It keeps every column it had, gains kek_id (for av_tenants_to_rewrap), and gets
-- neither the CSR nor the wrapped data key nor the sealed key. (Revoking the table-wide grant
-- first: it would otherwise cover every column whatever the column grants say.)
REVOKE SELECT ON orders FROM acmevault_definer;
GRANT SELECT (id, tenant_id, account_id, identifiers, identifiers_hash, acme_url, state,
              idempotency_key, lease_owner, lease_expires_at, fencing_token, certificate_id,
              error, created_at, updated_at, kek_id)
  ON orders TO acmevault_definer;

-- av_tenants_to_rewrap (0004) also finds tenants whose orders hold keys under an older KEK.
-- Replacing a function takes its owner's rights, so a non-superuser migrator lends itself
-- acmevault_definer for the moment, as av_give_to_definer does (see 0001 for why it must not
-- stay a member). The function keeps its owner and grants.
DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    GRANT acmevault_definer TO CURRENT_USER;
  END IF;
END $$;

CREATE OR REPLACE FUNCTION av_tenants_to_rewrap(p_current_kek text, p_limit integer)
RETURNS SETOF bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT tenant_id FROM (
    SELECT tenant_id FROM account_keys WHERE kek_id <> p_current_kek
    UNION
    SELECT tenant_id FROM certificates WHERE kek_id <> p_current_kek
    UNION
    SELECT tenant_id FROM orders WHERE kek_id <> p_current_kek
  ) AS pending
  ORDER BY tenant_id
  LIMIT p_limit
$$;

DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    REVOKE acmevault_definer FROM CURRENT_USER;
  END IF;
END $$;
