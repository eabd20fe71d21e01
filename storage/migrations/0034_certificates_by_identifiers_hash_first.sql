-- compatible_from: 33
-- certificates_by_identifiers leads with the identifier set's hash, not the tenant. Every query
-- that uses it names both (the current certificate for a set, a new certificate's supersession),
-- so it serves them as before. Led by the tenant, it also matched a bare `tenant_id = $1`, and a
-- plan made before the table had statistics (a new database, or any time before autovacuum
-- first analyzes it) rated it as good as certificates_tenant_id_key for the foreign key check
-- PostgreSQL runs when an order records its certificate (orders (tenant_id, certificate_id)):
-- `WHERE tenant_id = $1 AND id = $2` then read every certificate of the tenant through it and
-- filtered on id. Each backend keeps that plan until the table is analyzed, so every completed
-- order read all of its tenant's certificates: 0.28 ms per certificate of PostgreSQL's time by
-- the 2,500th in a new database (issue 10, docs/benchmarks.md). An older binary cannot notice.
CREATE INDEX certificates_by_identifiers_hash_first
  ON certificates (identifiers_hash, tenant_id, not_after DESC);
DROP INDEX certificates_by_identifiers;
ALTER INDEX certificates_by_identifiers_hash_first RENAME TO certificates_by_identifiers;
