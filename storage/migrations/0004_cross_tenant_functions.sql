-- The only ways acmevault_app reaches across tenants: SECURITY DEFINER functions owned by
-- acmevault_definer, each doing one narrow thing. acmevault_definer holds just the privileges
-- these functions use (column-level where possible: it cannot read a wrapped key or a chain),
-- and row-level security lets it through only by its own per-command policies.
--
--   av_create_tenant, av_list_tenants, av_find_tenant   platform administration
--   av_authenticate_spiffe, av_authenticate_token        who is calling (before a tenant is known)
--   av_claim_stale_orders                                any replica resumes any tenant's order
--   av_certificates_due                                  the renewal scheduler
--   av_lookup_challenge                                  the HTTP-01 responder
--   av_tenants_to_rewrap                                 KEK rotation finds tenants with work

GRANT SELECT, INSERT ON tenants TO acmevault_definer;
GRANT SELECT ON identities TO acmevault_definer;
GRANT SELECT ON orders TO acmevault_definer;
GRANT UPDATE (lease_owner, lease_expires_at, fencing_token, updated_at) ON orders
  TO acmevault_definer;
GRANT SELECT (id, tenant_id, identifiers, not_after, revoked_at, superseded_at, kek_id)
  ON certificates TO acmevault_definer;
GRANT SELECT (tenant_id, kek_id) ON account_keys TO acmevault_definer;
GRANT SELECT (token, key_authorization) ON challenges TO acmevault_definer;
DO $$
BEGIN
  EXECUTE format('GRANT USAGE ON SEQUENCE %s TO acmevault_definer',
                 pg_get_serial_sequence('tenants', 'id'));
END $$;

CREATE POLICY cross_tenant_read ON tenants FOR SELECT TO acmevault_definer USING (true);
CREATE POLICY cross_tenant_create ON tenants FOR INSERT TO acmevault_definer WITH CHECK (true);
CREATE POLICY cross_tenant_read ON identities FOR SELECT TO acmevault_definer USING (true);
CREATE POLICY cross_tenant_read ON orders FOR SELECT TO acmevault_definer USING (true);
CREATE POLICY cross_tenant_lease ON orders FOR UPDATE TO acmevault_definer
  USING (true) WITH CHECK (true);
CREATE POLICY cross_tenant_read ON certificates FOR SELECT TO acmevault_definer USING (true);
CREATE POLICY cross_tenant_read ON account_keys FOR SELECT TO acmevault_definer USING (true);
CREATE POLICY cross_tenant_read ON challenges FOR SELECT TO acmevault_definer USING (true);

CREATE FUNCTION av_create_tenant(p_name text, p_allowed text[], p_key_algorithm text,
                                 p_max_key_age_seconds bigint, p_deactivate boolean,
                                 p_ephemeral boolean, p_renewal_window_seconds bigint,
                                 p_directory text, p_at timestamptz)
RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  INSERT INTO tenants (name, allowed_identifiers, key_algorithm, max_key_age_seconds,
                       deactivate_authorizations_after_issuance, ephemeral_accounts,
                       renewal_window_seconds, acme_directory_url, created_at, updated_at)
  VALUES (p_name, p_allowed, p_key_algorithm, p_max_key_age_seconds, p_deactivate, p_ephemeral,
          p_renewal_window_seconds, p_directory, p_at, p_at)
  RETURNING id
$$;

CREATE FUNCTION av_list_tenants(p_after bigint, p_limit integer) RETURNS SETOF tenants
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT * FROM tenants WHERE id > p_after ORDER BY id LIMIT p_limit $$;

CREATE FUNCTION av_find_tenant(p_name text) RETURNS SETOF tenants
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT * FROM tenants WHERE name = p_name $$;

-- Live identities of enabled tenants only. The token hash is not returned.
CREATE FUNCTION av_authenticate_spiffe(p_spiffe_id text)
RETURNS TABLE (id bigint, tenant_id bigint, role text, spiffe_id text, bearer_token boolean,
               description text, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT i.id, i.tenant_id, i.role, i.spiffe_id, false, i.description, i.created_at
  FROM identities i JOIN tenants t ON t.id = i.tenant_id
  WHERE i.spiffe_id = p_spiffe_id AND i.revoked_at IS NULL AND t.disabled_at IS NULL
$$;

CREATE FUNCTION av_authenticate_token(p_token_sha256 bytea)
RETURNS TABLE (id bigint, tenant_id bigint, role text, spiffe_id text, bearer_token boolean,
               description text, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT i.id, i.tenant_id, i.role, i.spiffe_id, true, i.description, i.created_at
  FROM identities i JOIN tenants t ON t.id = i.tenant_id
  WHERE i.token_sha256 = p_token_sha256 AND i.revoked_at IS NULL AND t.disabled_at IS NULL
$$;

-- Leases (DESIGN.md §4: a replica killed anywhere leaves an order another resumes). Rows a
-- concurrent claimer holds are skipped, so every order goes to exactly one claimer; each claim
-- increments the fencing token, which every later write of the order must present.
CREATE FUNCTION av_claim_stale_orders(p_owner text, p_now timestamptz, p_until timestamptz,
                                      p_limit integer)
RETURNS TABLE (tenant_id bigint, order_id bigint, fencing_token bigint,
               lease_expires_at timestamptz)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  WITH stale AS (
    SELECT o.id
    FROM orders o
    WHERE o.state NOT IN ('valid', 'invalid')
      AND (o.lease_expires_at IS NULL OR o.lease_expires_at <= p_now)
      AND EXISTS (SELECT 1 FROM tenants t WHERE t.id = o.tenant_id AND t.disabled_at IS NULL)
    ORDER BY o.lease_expires_at NULLS FIRST, o.id
    LIMIT p_limit
    FOR UPDATE OF o SKIP LOCKED
  )
  UPDATE orders o
  SET lease_owner = p_owner, lease_expires_at = p_until, fencing_token = o.fencing_token + 1,
      updated_at = p_now
  FROM stale
  WHERE o.id = stale.id
  RETURNING o.tenant_id, o.id, o.fencing_token, o.lease_expires_at
$$;

-- Live certificates within their tenant's renewal window (or past it), by (not_after, id)
-- after the cursor. The first bound lets the certificates_due index cut the scan short.
CREATE FUNCTION av_certificates_due(p_now timestamptz, p_after_not_after timestamptz,
                                    p_after_id bigint, p_limit integer)
RETURNS TABLE (tenant_id bigint, id bigint, identifiers text[], not_after timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT c.tenant_id, c.id, c.identifiers, c.not_after
  FROM certificates c JOIN tenants t ON t.id = c.tenant_id
  WHERE c.revoked_at IS NULL AND c.superseded_at IS NULL AND t.disabled_at IS NULL
    AND c.not_after <= p_now + (SELECT max(renewal_window_seconds) FROM tenants)
                               * interval '1 second'
    AND c.not_after <= p_now + t.renewal_window_seconds * interval '1 second'
    AND (c.not_after, c.id) > (coalesce(p_after_not_after, '-infinity'), coalesce(p_after_id, 0))
  ORDER BY c.not_after, c.id
  LIMIT p_limit
$$;

CREATE FUNCTION av_lookup_challenge(p_token text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT key_authorization FROM challenges WHERE token = p_token $$;

-- Tenant ids only: the re-wrap itself runs per tenant under row-level security.
CREATE FUNCTION av_tenants_to_rewrap(p_current_kek text, p_limit integer) RETURNS SETOF bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT tenant_id FROM (
    SELECT tenant_id FROM account_keys WHERE kek_id <> p_current_kek
    UNION
    SELECT tenant_id FROM certificates WHERE kek_id <> p_current_kek
  ) AS pending
  ORDER BY tenant_id
  LIMIT p_limit
$$;

-- Hand the functions to acmevault_definer. A non-superuser may only give an object to a role
-- that can create it, hence the temporary CREATE privilege.
GRANT CREATE ON SCHEMA public TO acmevault_definer;
DO $$
DECLARE
  f regprocedure;
BEGIN
  FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
           JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'public'
             AND p.proname IN ('av_create_tenant', 'av_list_tenants', 'av_find_tenant',
                               'av_authenticate_spiffe', 'av_authenticate_token',
                               'av_claim_stale_orders', 'av_certificates_due',
                               'av_lookup_challenge', 'av_tenants_to_rewrap') LOOP
    EXECUTE format('ALTER FUNCTION %s OWNER TO acmevault_definer', f);
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO acmevault_app', f);
  END LOOP;
END $$;
REVOKE CREATE ON SCHEMA public FROM acmevault_definer;
