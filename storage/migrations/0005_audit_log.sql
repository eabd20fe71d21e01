-- The audit log (DESIGN.md §3): append-only, one row per key use and state change, hash-chained
-- per tenant. No secret is ever written here (the store passes identifiers, ids, URLs and
-- outcomes only).
--
-- Chain: row n of a tenant has seq = n, prev_hash = hash of row n-1 (32 zero bytes for n = 1)
-- and hash = SHA-256(av_audit_encoding(row)), an unambiguous length-prefixed encoding of every
-- field including seq and prev_hash. A BEFORE INSERT trigger assigns seq, prev_hash and hash
-- (the client cannot choose them) while holding the tenant's row in audit_heads, which
-- serialises appends per tenant and records the last seq and hash, so deleting the newest row
-- is detected too. acmevault_app may INSERT and SELECT its tenant's rows; nobody but a
-- superuser can UPDATE or DELETE them.

CREATE TABLE audit_log (
  tenant_id bigint NOT NULL REFERENCES tenants (id),
  seq bigint NOT NULL CHECK (seq >= 1),
  at timestamptz NOT NULL,
  actor text NOT NULL,
  rpc text NOT NULL,
  action text NOT NULL CHECK (action <> ''),
  identifiers text[] NOT NULL,
  account_id bigint,
  key_version integer,
  acme_url text NOT NULL,
  outcome text NOT NULL,
  detail text NOT NULL,
  prev_hash bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
  hash bytea NOT NULL CHECK (octet_length(hash) = 32),
  PRIMARY KEY (tenant_id, seq)
);

CREATE TABLE audit_heads (
  tenant_id bigint PRIMARY KEY REFERENCES tenants (id),
  seq bigint NOT NULL,
  hash bytea NOT NULL
);

CREATE FUNCTION av_audit_text(t text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT int4send(octet_length(t)) || convert_to(t, 'UTF8') $$;

CREATE FUNCTION av_audit_int(v bigint) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN v IS NULL THEN '\x00'::bytea ELSE '\x01'::bytea || int8send(v) END $$;

CREATE FUNCTION av_audit_encoding(a audit_log) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT convert_to('acmevault-audit-v1', 'UTF8')
      || a.prev_hash
      || int8send(a.tenant_id) || int8send(a.seq) || int8send(av_us(a.at))
      || av_audit_text(a.actor) || av_audit_text(a.rpc) || av_audit_text(a.action)
      || int4send(cardinality(a.identifiers))
      || coalesce((SELECT string_agg(av_audit_text(x), ''::bytea ORDER BY n)
                   FROM unnest(a.identifiers) WITH ORDINALITY AS u(x, n)), ''::bytea)
      || av_audit_int(a.account_id) || av_audit_int(a.key_version)
      || av_audit_text(a.acme_url) || av_audit_text(a.outcome) || av_audit_text(a.detail)
$$;

CREATE FUNCTION av_audit_digest(a audit_log) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT sha256(av_audit_encoding(a)) $$;

CREATE FUNCTION av_audit_chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
  head audit_heads%ROWTYPE;
BEGIN
  INSERT INTO audit_heads (tenant_id, seq, hash)
  VALUES (NEW.tenant_id, 0, decode(repeat('00', 32), 'hex'))
  ON CONFLICT (tenant_id) DO NOTHING;
  SELECT * INTO head FROM audit_heads WHERE tenant_id = NEW.tenant_id FOR UPDATE;
  NEW.seq := head.seq + 1;
  NEW.prev_hash := head.hash;
  NEW.hash := av_audit_digest(NEW);
  UPDATE audit_heads SET seq = NEW.seq, hash = NEW.hash WHERE tenant_id = NEW.tenant_id;
  RETURN NEW;
END $$;
CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log
  FOR EACH ROW EXECUTE FUNCTION av_audit_chain();

CREATE FUNCTION av_audit_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION av_audit_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION av_audit_refuse_change();

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_read ON audit_log FOR SELECT TO acmevault_app
  USING (tenant_id = av_tenant());
CREATE POLICY tenant_append ON audit_log FOR INSERT TO acmevault_app
  WITH CHECK (tenant_id = av_tenant());
GRANT SELECT, INSERT ON audit_log TO acmevault_app;

ALTER TABLE audit_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_read ON audit_heads FOR SELECT TO acmevault_app
  USING (tenant_id = av_tenant());
CREATE POLICY chain ON audit_heads TO acmevault_definer USING (true) WITH CHECK (true);
GRANT SELECT ON audit_heads TO acmevault_app;
GRANT SELECT, INSERT, UPDATE ON audit_heads TO acmevault_definer;

GRANT CREATE ON SCHEMA public TO acmevault_definer;
ALTER FUNCTION av_audit_chain() OWNER TO acmevault_definer;
REVOKE CREATE ON SCHEMA public FROM acmevault_definer;
REVOKE ALL ON FUNCTION av_audit_chain() FROM PUBLIC;
