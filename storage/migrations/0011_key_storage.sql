-- Account keys in a PKCS#11 token (docs/DESIGN.md, "Keys in hardware"). A tenant's policy says
-- where its account keys live: 'vault' (sealed in account_keys, as before) or 'pkcs11' (made in
-- the token, never leaving it). A token key's row keeps the token object's id and the public
-- key, and no key material at all: no KEK id, no wrapped data key, no sealed key. Not
-- compatible with older binaries: they read kek_id as always set.

ALTER TABLE tenants ADD COLUMN key_storage text NOT NULL DEFAULT 'vault'
  CHECK (key_storage IN ('vault', 'pkcs11'));

ALTER TABLE account_keys
  ALTER COLUMN kek_id DROP NOT NULL,
  ALTER COLUMN wrapped_data_key DROP NOT NULL,
  ALTER COLUMN sealed_private_key DROP NOT NULL,
  ADD COLUMN token_object text CHECK (token_object <> '' AND octet_length(token_object) <= 128),
  -- When the token object of a retired or compromised key was destroyed (after the grace).
  ADD COLUMN destroyed_at timestamptz;
-- Exactly one kind of material: sealed in the vault, or a token object. NOT VALID: every row
-- written before this migration is a vault key with all three columns set.
ALTER TABLE account_keys ADD CONSTRAINT account_keys_one_kind_of_material CHECK (
  (token_object IS NULL AND kek_id IS NOT NULL AND wrapped_data_key IS NOT NULL
   AND sealed_private_key IS NOT NULL)
  OR (token_object IS NOT NULL AND kek_id IS NULL AND wrapped_data_key IS NULL
      AND sealed_private_key IS NULL)) NOT VALID;
ALTER TABLE account_keys ADD CONSTRAINT account_keys_destroyed_token_keys_only CHECK (
  destroyed_at IS NULL OR (token_object IS NOT NULL AND state IN ('retired', 'compromised')))
  NOT VALID;

-- 0002's guard, NULL-safe now that the material columns may be NULL, and covering the new
-- columns: the token object never changes, a key never changes kind (re-wrap may not add a KEK
-- to a token key), and destroyed_at is set once.
CREATE OR REPLACE FUNCTION av_account_keys_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.tenant_id <> OLD.tenant_id OR NEW.account_id <> OLD.account_id
     OR NEW.version <> OLD.version OR NEW.algorithm <> OLD.algorithm
     OR NEW.public_jwk <> OLD.public_jwk OR NEW.thumbprint <> OLD.thumbprint
     OR NEW.sealed_private_key IS DISTINCT FROM OLD.sealed_private_key
     OR NEW.token_object IS DISTINCT FROM OLD.token_object
     OR (NEW.kek_id IS NULL) <> (OLD.kek_id IS NULL)
     OR NEW.created_at <> OLD.created_at THEN
    PERFORM av_refuse('account key material is immutable');
  END IF;
  IF OLD.destroyed_at IS NOT NULL AND NEW.destroyed_at IS DISTINCT FROM OLD.destroyed_at THEN
    PERFORM av_refuse('a destroyed account key stays destroyed');
  END IF;
  IF NEW.state <> OLD.state AND NOT (
       (OLD.state = 'pending' AND NEW.state IN ('active', 'retired'))
    OR (OLD.state = 'active' AND NEW.state = 'retired')
    OR NEW.state = 'compromised') THEN
    PERFORM av_refuse('account key cannot go from ' || OLD.state || ' to ' || NEW.state);
  END IF;
  RETURN NEW;
END $$;
