-- The database work of one certificate as issue 10 describes its fewest transitions, run by
-- pgbench (tests/bench/run_e2e_bench, "floor"): four transactions, each sent as one pipeline of
-- prepared statements (-M prepared), as a member of acmevault_app under row-level security, with
-- the rows an issuance writes today (the order, its job, one authorization and challenge, the
-- certificate, 11 audit rows) and no read: the order's state is taken to be in memory.
--   1. the order and its job (leased to the replica that made it), audited;
--   2. the CA's order: URL, authorization, challenge answer, audited with the account key's use;
--   3. ready to processing, audited;
--   4. the certificate, the order valid, the authorization deactivated, the answer and the job
--      deleted, audited.
-- Variables: tenant and account (rows the run made), chain (a PEM-sized text).
\set n random(1, 9000000000000000)
\startpipeline
BEGIN;
SELECT set_config('acmevault.tenant_id', :tenant::text, true);
INSERT INTO orders (id, tenant_id, account_id, identifiers, state, lease_owner, lease_expires_at,
  fencing_token, error, created_at, updated_at, csr_der, kek_id, wrapped_data_key,
  sealed_private_key, created_by)
VALUES (:n, :tenant, :account, ARRAY['c' || :n || '.floor.test'], 'created', 'floor:1',
  now() + interval '60 s', 1, '', now(), now(), decode(repeat('ab', 300), 'hex'), 'kek-floor',
  decode(repeat('cd', 60), 'hex'), decode(repeat('ef', 150), 'hex'), 'token:1');
INSERT INTO jobs (id, tenant_id, kind, subject, ca, not_before, lease_owner, lease_expires_at,
  fencing_token, attempts, last_error, created_at, updated_at)
VALUES (:n, :tenant, 'order_step', :n::text, 'https://ca.floor.test/dir', now(), 'floor:1',
  now() + interval '60 s', 1, 0, '', now(), now());
INSERT INTO audit_log (tenant_id, at, actor, rpc, action, identifiers, account_id, key_version,
  acme_url, outcome, detail)
VALUES (:tenant, now(), 'token:1', 'CertificateService/IssueCertificate', 'CreateOrder',
  ARRAY['c' || :n || '.floor.test'], :account, NULL, '', 'ok', 'order ' || :n);
COMMIT;
\endpipeline
\startpipeline
BEGIN;
SELECT set_config('acmevault.tenant_id', :tenant::text, true);
UPDATE orders SET acme_url = 'https://ca.floor.test/order/' || :n, state = 'pending',
  updated_at = now() WHERE id = :n;
INSERT INTO authorizations (id, tenant_id, account_id, order_id, url, identifier, status,
  expires_at, created_at, updated_at)
VALUES (:n, :tenant, :account, :n, 'https://ca.floor.test/authz/' || :n, 'c' || :n || '.floor.test',
  'pending', now() + interval '1 hour', now(), now());
INSERT INTO challenges (token, tenant_id, key_authorization, created_at)
VALUES ('token' || :n, :tenant, 'token' || :n || '.Ts6d0RQBjr7LaYCLWNZJDWGUVOe7gyxGEUdFJQsY7kM',
  now());
INSERT INTO audit_log (tenant_id, at, actor, rpc, action, identifiers, account_id, key_version,
  acme_url, outcome, detail)
VALUES
  (:tenant, now(), 'floor:1', 'order_step', 'UseAccountKey', '{}', :account, 1, '', 'ok',
   'order ' || :n),
  (:tenant, now(), 'floor:1', 'order_step', 'RecordOrderUrl', ARRAY['c' || :n || '.floor.test'],
   :account, NULL, 'https://ca.floor.test/order/' || :n, 'ok', 'order ' || :n),
  (:tenant, now(), 'floor:1', 'order_step', 'RecordAuthorization',
   ARRAY['c' || :n || '.floor.test'], :account, NULL, 'https://ca.floor.test/authz/' || :n, 'ok',
   'pending'),
  (:tenant, now(), 'floor:1', 'order_step', 'PutChallenge', ARRAY['c' || :n || '.floor.test'],
   :account, NULL, '', 'ok', 'http-01');
COMMIT;
\endpipeline
\startpipeline
BEGIN;
SELECT set_config('acmevault.tenant_id', :tenant::text, true);
UPDATE orders SET state = 'processing', updated_at = now() WHERE id = :n;
INSERT INTO audit_log (tenant_id, at, actor, rpc, action, identifiers, account_id, key_version,
  acme_url, outcome, detail)
VALUES (:tenant, now(), 'floor:1', 'order_step', 'TransitionOrder',
  ARRAY['c' || :n || '.floor.test'], :account, NULL, 'https://ca.floor.test/order/' || :n, 'ok',
  'order ' || :n || ': ready -> processing');
COMMIT;
\endpipeline
\startpipeline
BEGIN;
SELECT set_config('acmevault.tenant_id', :tenant::text, true);
INSERT INTO certificates (id, tenant_id, account_id, order_id, identifiers, serial, not_before,
  not_after, chain_pem, account_key_version, kek_id, wrapped_data_key, sealed_private_key,
  created_at)
VALUES (:n, :tenant, :account, :n, ARRAY['c' || :n || '.floor.test'], to_hex(:n::bigint), now(),
  now() + interval '90 days', :chain, 1, 'kek-floor', decode(repeat('cd', 60), 'hex'),
  decode(repeat('ef', 150), 'hex'), now());
UPDATE orders SET state = 'valid', certificate_id = :n, lease_owner = NULL,
  lease_expires_at = NULL, updated_at = now() WHERE id = :n;
UPDATE authorizations SET status = 'deactivated', deactivated_at = now(), updated_at = now()
  WHERE id = :n;
DELETE FROM challenges WHERE token = 'token' || :n;
DELETE FROM jobs WHERE id = :n;
INSERT INTO audit_log (tenant_id, at, actor, rpc, action, identifiers, account_id, key_version,
  acme_url, outcome, detail)
VALUES
  (:tenant, now(), 'floor:1', 'order_step', 'UseCertificateKey', ARRAY['c' || :n || '.floor.test'],
   :account, NULL, '', 'ok', 'order ' || :n),
  (:tenant, now(), 'floor:1', 'order_step', 'InsertCertificate', ARRAY['c' || :n || '.floor.test'],
   :account, 1, '', 'ok', 'certificate ' || :n),
  (:tenant, now(), 'floor:1', 'order_step', 'CompleteOrder', ARRAY['c' || :n || '.floor.test'],
   :account, NULL, 'https://ca.floor.test/order/' || :n, 'ok', 'order ' || :n),
  (:tenant, now(), 'floor:1', 'order_step', 'MarkAuthorizationDeactivated',
   ARRAY['c' || :n || '.floor.test'], :account, NULL, 'https://ca.floor.test/authz/' || :n, 'ok',
   ''),
  (:tenant, now(), 'floor:1', 'order_step', 'DeleteChallenge', ARRAY['c' || :n || '.floor.test'],
   :account, NULL, '', 'ok', '');
COMMIT;
\endpipeline
