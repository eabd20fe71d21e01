-- Roles and helper functions.
--
-- acmevault_app: what the service runs as (a LOGIN role that is a member of it, or the role
-- itself given LOGIN). It owns nothing, so row-level security binds it, and it reaches other
-- tenants' rows only through the acmevault_definer functions of migration 0004.
-- acmevault_definer: owns the narrow cross-tenant SECURITY DEFINER functions and holds exactly
-- the privileges they need. NOLOGIN; nobody connects as it.
--
-- Roles are cluster-wide while migrations run per database, so several databases (and
-- concurrent test runs) may race to create them: creating one that exists is not an error.
DO $$
BEGIN
  CREATE ROLE acmevault_app NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

DO $$
BEGIN
  CREATE ROLE acmevault_definer NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

-- A non-superuser migrator (a database owner with CREATEROLE) must be a member of
-- acmevault_definer to hand it the functions of migration 0004. Superusers need not.
DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    GRANT acmevault_definer TO CURRENT_USER;
  END IF;
EXCEPTION WHEN unique_violation THEN NULL;
END $$;

GRANT USAGE ON SCHEMA public TO acmevault_app, acmevault_definer;

-- The tenant of the current transaction, set by the store with
-- set_config('acmevault.tenant_id', id, true); NULL (so no row matches) when unset.
CREATE FUNCTION av_tenant() RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT NULLIF(current_setting('acmevault.tenant_id', true), '')::bigint $$;

-- Microseconds since the Unix epoch <-> timestamptz, exactly (the store's clock is injected and
-- passes times as integers).
CREATE FUNCTION av_ts(micros bigint) RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT timestamptz '1970-01-01 00:00:00+00' + micros * interval '1 microsecond' $$;

CREATE FUNCTION av_us(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT (extract(epoch FROM t) * 1000000)::bigint $$;

-- An identifier set in canonical form: sorted by bytes, without duplicates (storage/types.h).
CREATE FUNCTION av_identifiers_canonical(ids text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
  SELECT cardinality(ids) BETWEEN 1 AND 100
     AND ids = ARRAY(SELECT DISTINCT x COLLATE "C" FROM unnest(ids) AS x ORDER BY 1)
$$;

-- SHA-256 of a canonical identifier set: the key that finds "the same order" or "the same
-- certificate".
CREATE FUNCTION av_identifiers_hash(ids text[]) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT sha256(convert_to(array_to_string(ids, E'\n'), 'UTF8')) $$;
