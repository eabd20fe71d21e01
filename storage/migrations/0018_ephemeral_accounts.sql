-- Ephemeral accounts (issue 11, item 7): a tenant whose policy says ephemeral_accounts gets a
-- fresh ACME account for each order, deactivated once the order ended. Such an account is marked
-- ephemeral and is not the tenant's account: it is not counted by the "one pending or valid
-- account per tenant and directory" rule (migration 0007), so that orders in flight may each
-- hold one while the tenant keeps (or has no) main account.
--
-- No compatible_from line: an older binary would take a valid ephemeral account for the tenant's
-- account (issue with it, refuse CreateAccount because of it), so it must not start against
-- this schema.

ALTER TABLE accounts ADD COLUMN ephemeral boolean NOT NULL DEFAULT false;

-- An account's kind never changes once made.
CREATE OR REPLACE FUNCTION av_accounts_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.id <> OLD.id OR NEW.tenant_id <> OLD.tenant_id
     OR NEW.directory_url <> OLD.directory_url OR NEW.created_at <> OLD.created_at
     OR NEW.ephemeral <> OLD.ephemeral THEN
    PERFORM av_refuse('account identity is immutable');
  END IF;
  IF OLD.account_url IS NOT NULL AND NEW.account_url IS DISTINCT FROM OLD.account_url THEN
    PERFORM av_refuse('account URL is immutable once set');
  END IF;
  IF OLD.status IN ('deactivated', 'revoked') AND NEW IS DISTINCT FROM OLD THEN
    PERFORM av_refuse('account is ' || OLD.status);
  END IF;
  IF NEW.key_lease_token < OLD.key_lease_token THEN
    PERFORM av_refuse('account key lease fencing tokens never decrease');
  END IF;
  RETURN NEW;
END $$;

DROP INDEX accounts_one_live;
CREATE UNIQUE INDEX accounts_one_live ON accounts (tenant_id, directory_url)
  WHERE status IN ('pending', 'valid') AND NOT ephemeral;
