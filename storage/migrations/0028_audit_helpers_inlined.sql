-- compatible_from: 27
-- The audit chain's encoding (0005, 0023) and the identifier-set hash (0001), the same bytes
-- with less work per row. pg_stat_statements with planning tracked (tests/bench/run_e2e_bench
-- --statements) showed av_audit_text's body planned 74 times per certificate and
-- av_identifiers_hash's 6 times: both are declared IMMUTABLE, but their bodies call convert_to,
-- which is STABLE, and PostgreSQL inlines a SQL function only when its body is no more
-- volatile than its declaration (as av_ts and av_us in 0022). Declared STABLE, as their bodies
-- are, they are inlined. Neither is used by an index or a constraint.
--
-- The encoding itself gathered the identifiers with a sub-select (string_agg over unnest), so
-- its expression was run through the executor for every audit row. A loop over the array
-- appends the same bytes (in array order; a NULL element adds nothing, as string_agg skips it),
-- and the rest of the expression, without a sub-select, is a simple expression that PL/pgSQL
-- evaluates directly. PostgresStoreTest's chain tests check rows written before and after.
ALTER FUNCTION av_audit_text(text) STABLE;
ALTER FUNCTION av_identifiers_hash(text[]) STABLE;

CREATE OR REPLACE FUNCTION av_audit_encoding(a audit_log) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
  identifiers bytea := ''::bytea;
  x text;
BEGIN
  FOREACH x IN ARRAY coalesce(a.identifiers, '{}'::text[]) LOOP
    identifiers := identifiers || coalesce(av_audit_text(x), ''::bytea);
  END LOOP;
  RETURN convert_to('acmevault-audit-v1', 'UTF8')
      || a.prev_hash
      || int8send(a.tenant_id) || int8send(a.seq) || int8send(av_us(a.at))
      || av_audit_text(a.actor) || av_audit_text(a.rpc) || av_audit_text(a.action)
      || int4send(cardinality(a.identifiers))
      || identifiers
      || av_audit_int(a.account_id) || av_audit_int(a.key_version)
      || av_audit_text(a.acme_url) || av_audit_text(a.outcome) || av_audit_text(a.detail);
END $$;
