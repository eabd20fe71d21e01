-- Tenant isolation in the database. Every tenant-owned table has row-level security enabled
-- and forced (so even its owner is bound unless it is a superuser), with one policy for
-- acmevault_app: a row is visible and writable only when its tenant is the transaction's
-- (av_tenant(), from SET LOCAL / set_config('acmevault.tenant_id', id, true)). With no tenant
-- set, nothing matches. A row written for another tenant fails the WITH CHECK (SQLSTATE 42501).
--
-- Privileges are the least the store needs: no DELETE except on challenges, no INSERT into
-- tenants (creation goes through av_create_tenant, migration 0004).

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants TO acmevault_app
  USING (id = av_tenant()) WITH CHECK (id = av_tenant());
GRANT SELECT, UPDATE ON tenants TO acmevault_app;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['identities', 'accounts', 'account_keys', 'orders', 'authorizations',
                           'certificates', 'challenges'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I TO acmevault_app '
                   'USING (tenant_id = av_tenant()) WITH CHECK (tenant_id = av_tenant())', t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I TO acmevault_app', t);
  END LOOP;
END $$;

GRANT DELETE ON challenges TO acmevault_app;

-- Identity columns draw from sequences; certificates also reserve an id before sealing its key
-- (the id is part of the sealed key's binding).
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO acmevault_app;
