-- PostgreSQL's floor (pg_floor.sql) as the service sends its statements: each statement
-- prepared once per session by SQL PREPARE and run by EXECUTE with quoted values in a
-- simple-query string (-M simple), each transaction in the service's three round trips: BEGIN
-- with the tenant's set-up and check, the transition's statements after libpqxx's pipeline's
-- "SELECT 1", and the audit rows with COMMIT (the service's sending until 2026-12-05; it now
-- sends BEGIN with the first statements and some transitions whole, docs/benchmarks.md, and this
-- stays as it was so that its figure compares across sessions). tests/bench/run_e2e_bench runs both and prints
-- floor (pg_floor.sql) and floor_as_sent (this) per certificate. Variables as pg_floor.sql's, and
-- done=0 (set to 1 once a session has prepared the statements).
\set n random(1, 9000000000000000)
\if :done = 0
PREPARE s1(bigint, bigint, bigint) AS INSERT INTO orders (id, tenant_id, account_id, identifiers,
  state, lease_owner, lease_expires_at, fencing_token, error, created_at, updated_at, csr_der,
  kek_id, wrapped_data_key, sealed_private_key, created_by) VALUES ($1, $2, $3, ARRAY['c' || $1 ||
  '.floor.test'], 'created', 'floor:1', now() + interval '60 s', 1, '', now(), now(),
  decode(repeat('ab', 300), 'hex'), 'kek-floor', decode(repeat('cd', 60), 'hex'),
  decode(repeat('ef', 150), 'hex'), 'token:1');
PREPARE s2(bigint, bigint) AS INSERT INTO jobs (id, tenant_id, kind, subject, ca, not_before,
  lease_owner, lease_expires_at, fencing_token, attempts, last_error, created_at, updated_at)
  VALUES ($1, $2, 'order_step', $1::text, 'https://ca.floor.test/dir', now(), 'floor:1', now() +
  interval '60 s', 1, 0, '', now(), now());
PREPARE s3(bigint, bigint, bigint) AS INSERT INTO audit_log (tenant_id, at, actor, rpc, action,
  identifiers, account_id, key_version, acme_url, outcome, detail) VALUES ($1, now(), 'token:1',
  'CertificateService/IssueCertificate', 'CreateOrder', ARRAY['c' || $2 || '.floor.test'], $3,
  NULL, '', 'ok', 'order ' || $2);
PREPARE s4(bigint) AS UPDATE orders SET acme_url = 'https://ca.floor.test/order/' || $1, state =
  'pending', updated_at = now() WHERE id = $1;
PREPARE s5(bigint, bigint, bigint) AS INSERT INTO authorizations (id, tenant_id, account_id,
  order_id, url, identifier, status, expires_at, created_at, updated_at) VALUES ($1, $2, $3, $1,
  'https://ca.floor.test/authz/' || $1, 'c' || $1 || '.floor.test', 'pending', now() + interval
  '1 hour', now(), now());
PREPARE s6(bigint, bigint) AS INSERT INTO challenges (token, tenant_id, key_authorization,
  created_at) VALUES ('token' || $1, $2, 'token' || $1 ||
  '.Ts6d0RQBjr7LaYCLWNZJDWGUVOe7gyxGEUdFJQsY7kM', now());
PREPARE s7(bigint, bigint, bigint) AS INSERT INTO audit_log (tenant_id, at, actor, rpc, action,
  identifiers, account_id, key_version, acme_url, outcome, detail) VALUES ($1, now(), 'floor:1',
  'order_step', 'UseAccountKey', '{}', $2, 1, '', 'ok', 'order ' || $3), ($1, now(), 'floor:1',
  'order_step', 'RecordOrderUrl', ARRAY['c' || $3 || '.floor.test'], $2, NULL,
  'https://ca.floor.test/order/' || $3, 'ok', 'order ' || $3), ($1, now(), 'floor:1', 'order_step',
  'RecordAuthorization', ARRAY['c' || $3 || '.floor.test'], $2, NULL,
  'https://ca.floor.test/authz/' || $3, 'ok', 'pending'), ($1, now(), 'floor:1', 'order_step',
  'PutChallenge', ARRAY['c' || $3 || '.floor.test'], $2, NULL, '', 'ok', 'http-01');
PREPARE s8(bigint) AS UPDATE orders SET state = 'processing', updated_at = now() WHERE id = $1;
PREPARE s9(bigint, bigint, bigint) AS INSERT INTO audit_log (tenant_id, at, actor, rpc, action,
  identifiers, account_id, key_version, acme_url, outcome, detail) VALUES ($1, now(), 'floor:1',
  'order_step', 'TransitionOrder', ARRAY['c' || $2 || '.floor.test'], $3, NULL,
  'https://ca.floor.test/order/' || $2, 'ok', 'order ' || $2 || ': ready -> processing');
PREPARE s10(bigint, bigint, bigint, text) AS INSERT INTO certificates (id, tenant_id, account_id,
  order_id, identifiers, serial, not_before, not_after, chain_pem, account_key_version, kek_id,
  wrapped_data_key, sealed_private_key, created_at) VALUES ($1, $2, $3, $1, ARRAY['c' || $1 ||
  '.floor.test'], to_hex($1::bigint), now(), now() + interval '90 days', $4, 1, 'kek-floor',
  decode(repeat('cd', 60), 'hex'), decode(repeat('ef', 150), 'hex'), now());
PREPARE s11(bigint) AS UPDATE orders SET state = 'valid', certificate_id = $1, lease_owner = NULL,
  lease_expires_at = NULL, updated_at = now() WHERE id = $1;
PREPARE s12(bigint) AS UPDATE authorizations SET status = 'deactivated', deactivated_at = now(),
  updated_at = now() WHERE id = $1;
PREPARE s13(bigint) AS DELETE FROM challenges WHERE token = 'token' || $1;
PREPARE s14(bigint) AS DELETE FROM jobs WHERE id = $1;
PREPARE s15(bigint, bigint, bigint) AS INSERT INTO audit_log (tenant_id, at, actor, rpc, action,
  identifiers, account_id, key_version, acme_url, outcome, detail) VALUES ($1, now(), 'floor:1',
  'order_step', 'UseCertificateKey', ARRAY['c' || $2 || '.floor.test'], $3, NULL, '', 'ok',
  'order ' || $2), ($1, now(), 'floor:1', 'order_step', 'InsertCertificate', ARRAY['c' || $2 ||
  '.floor.test'], $3, 1, '', 'ok', 'certificate ' || $2), ($1, now(), 'floor:1', 'order_step',
  'CompleteOrder', ARRAY['c' || $2 || '.floor.test'], $3, NULL, 'https://ca.floor.test/order/' ||
  $2, 'ok', 'order ' || $2), ($1, now(), 'floor:1', 'order_step', 'MarkAuthorizationDeactivated',
  ARRAY['c' || $2 || '.floor.test'], $3, NULL, 'https://ca.floor.test/authz/' || $2, 'ok', ''),
  ($1, now(), 'floor:1', 'order_step', 'DeleteChallenge', ARRAY['c' || $2 || '.floor.test'], $3,
  NULL, '', 'ok', '');
PREPARE t_exists(text) AS SELECT 1 FROM tenants WHERE (SELECT set_config('acmevault.tenant_id', $1,
  true)) IS NOT NULL;
\set done 1
\endif
BEGIN\; EXECUTE t_exists(':tenant');
SELECT 1\; EXECUTE s1(':n', ':tenant', ':account')\; EXECUTE s2(':n', ':tenant');
EXECUTE s3(':tenant', ':n', ':account')\; COMMIT;
BEGIN\; EXECUTE t_exists(':tenant');
SELECT 1\; EXECUTE s4(':n')\; EXECUTE s5(':n', ':tenant', ':account')\; EXECUTE s6(':n',
  ':tenant');
EXECUTE s7(':tenant', ':account', ':n')\; COMMIT;
BEGIN\; EXECUTE t_exists(':tenant');
SELECT 1\; EXECUTE s8(':n');
EXECUTE s9(':tenant', ':n', ':account')\; COMMIT;
BEGIN\; EXECUTE t_exists(':tenant');
SELECT 1\; EXECUTE s10(':n', ':tenant', ':account', ':chain')\; EXECUTE s11(':n')\; EXECUTE
  s12(':n')\; EXECUTE s13(':n')\; EXECUTE s14(':n');
EXECUTE s15(':tenant', ':n', ':account')\; COMMIT;
