-- compatible_from: 18
-- Hijack detection (issue 11, item 6): when the CA no longer knows our active key for an
-- account (someone rolled it over) or reports it closed when we did not close it, the service
-- stamps the account hijacked. It keeps its status (the CA may still hold it valid, for someone
-- else) but is no longer the tenant's live account: the compromise response opens a new one
-- for the same directory, so the one-live-account index leaves hijacked accounts out. Older
-- binaries never read the column; they use the newest valid account, as before.

ALTER TABLE accounts ADD COLUMN hijacked_at timestamptz;
ALTER TABLE accounts ADD CONSTRAINT accounts_hijacked_registered
  CHECK (hijacked_at IS NULL OR account_url IS NOT NULL);

DROP INDEX accounts_one_live;
CREATE UNIQUE INDEX accounts_one_live ON accounts (tenant_id, directory_url)
  WHERE status IN ('pending', 'valid') AND NOT ephemeral AND hijacked_at IS NULL;
