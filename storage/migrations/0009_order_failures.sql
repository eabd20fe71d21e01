-- compatible_from: 8
-- Orders keep the CA's problem type of a failure, and an order created without finalization
-- material may get it once. Additive: a binary that knows migrations up to 0008 never reads the
-- new column (it defaults to '') and always writes material with the order, which the guard still
-- admits, so it keeps running against this schema.

-- The ACME problem type (RFC 8555 §6.7, e.g. urn:ietf:params:acme:error:rejectedIdentifier) of
-- the CA's answer that made the order invalid; '' when the failure carried none. A constant
-- default adds the column without rewriting the table; the CHECK is NOT VALID, so adding it does
-- not scan the table (every existing row holds '').
ALTER TABLE orders ADD COLUMN problem_type text NOT NULL DEFAULT '';
ALTER TABLE orders ADD CONSTRAINT orders_problem_type_size
  CHECK (octet_length(problem_type) <= 256) NOT VALID;

-- 0006's guard, with one change: an order created without finalization material (the service
-- generates a certificate key only once it knows the order is new) gets it once, while it is
-- still 'created'. After that the CSR and the sealed key never change, as before.
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
  -- Only the KEK id and the wrapped data key may change (re-wrap), and material (a CSR, with or
  -- without a key) may be attached to a 'created' order that has none; otherwise the CSR and the
  -- sealed key never change, and no key is added or removed.
  IF NEW.csr_der IS DISTINCT FROM OLD.csr_der
     OR NEW.sealed_private_key IS DISTINCT FROM OLD.sealed_private_key
     OR (NEW.kek_id IS NULL) <> (OLD.kek_id IS NULL) THEN
    IF NOT (OLD.csr_der IS NULL AND OLD.kek_id IS NULL AND OLD.state = 'created'
            AND NEW.csr_der IS NOT NULL) THEN
      PERFORM av_refuse('order finalization material is immutable');
    END IF;
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
