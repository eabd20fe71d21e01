-- The contact URLs the CA holds for each account (RFC 8555 §7.1.2 "contact"), as its answer to
-- newAccount gave them, so that AccountService.GetAccount shows them (it showed none: the store
-- kept no contact). A rollover by a new account copies the old account's. Clipped by the
-- service (storage::rules::ClipAccountContact). A column with a constant default: no rewrite,
-- and older binaries, which name their columns, neither read nor write it.
-- compatible_from: 36
ALTER TABLE accounts ADD COLUMN contact text[] NOT NULL DEFAULT '{}';
