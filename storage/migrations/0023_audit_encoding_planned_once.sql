-- compatible_from: 22
-- The audit chain's encoding (0005), the same bytes computed with one plan per connection. As a
-- SQL function whose body has a subquery (the identifiers' string_agg) PostgreSQL could not
-- inline it, so each call from the chain trigger parsed, analyzed and planned the body again:
-- a fifth of PostgreSQL's time per certificate (docs/benchmarks.md). A PL/pgSQL function
-- plans its expression on first use and keeps the plan for the session. The expression is
-- 0005's, unchanged; PostgresStoreTest's chain tests check rows written before and after.
CREATE OR REPLACE FUNCTION av_audit_encoding(a audit_log) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
  RETURN convert_to('acmevault-audit-v1', 'UTF8')
      || a.prev_hash
      || int8send(a.tenant_id) || int8send(a.seq) || int8send(av_us(a.at))
      || av_audit_text(a.actor) || av_audit_text(a.rpc) || av_audit_text(a.action)
      || int4send(cardinality(a.identifiers))
      || coalesce((SELECT string_agg(av_audit_text(x), ''::bytea ORDER BY n)
                   FROM unnest(a.identifiers) WITH ORDINALITY AS u(x, n)), ''::bytea)
      || av_audit_int(a.account_id) || av_audit_int(a.key_version)
      || av_audit_text(a.acme_url) || av_audit_text(a.outcome) || av_audit_text(a.detail);
END $$;
