-- eab_keys: a tenant's External Account Binding credentials (RFC 8555 §7.3.4), kept for the
-- accounts the service opens by itself at a CA that requires EAB (an ephemeral account, the
-- rollover at a CA without keyChange, a hijacked account's replacement, CreateAccount without
-- a key). At most one per tenant: the key id in clear (it names the key, it is no secret), the
-- HMAC key sealed as private keys are (envelope encryption, context "eab-key|tenant=T|eab=ID";
-- the column keeps the name every sealed table shares). The definer sees the tenant and the
-- KEK id only, for av_tenants_to_rewrap, which covers the table from here on. Not admitting
-- older binaries: their re-wrap would find tenants it cannot finish and never report done.

CREATE TABLE eab_keys (
  id bigserial PRIMARY KEY,
  tenant_id bigint NOT NULL UNIQUE REFERENCES tenants (id),
  directory_url text NOT NULL CHECK (octet_length(directory_url) BETWEEN 1 AND 2048),
  key_id text NOT NULL CHECK (octet_length(key_id) BETWEEN 1 AND 512),
  kek_id text NOT NULL,
  wrapped_data_key bytea NOT NULL,
  sealed_private_key bytea NOT NULL,
  created_at timestamptz NOT NULL
);

ALTER TABLE eab_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE eab_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eab_keys TO acmevault_app
  USING (tenant_id = av_tenant()) WITH CHECK (tenant_id = av_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON eab_keys TO acmevault_app;
DO $$
BEGIN
  EXECUTE format('GRANT USAGE ON SEQUENCE %s TO acmevault_app',
                 pg_get_serial_sequence('eab_keys', 'id'));
END $$;
GRANT SELECT (tenant_id, kek_id) ON eab_keys TO acmevault_definer;
CREATE POLICY cross_tenant_read ON eab_keys FOR SELECT TO acmevault_definer USING (true);

-- Replacing a definer-owned function, as 0006 does.
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
    UNION
    SELECT tenant_id FROM eab_keys WHERE kek_id <> p_current_kek
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
