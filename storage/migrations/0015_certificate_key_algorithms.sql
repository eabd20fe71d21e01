-- compatible_from: 14
-- A tenant's certificate key policy (issue 11): the key algorithms its hosts' CSRs may use and
-- the service may generate. Empty means the service's own list (ECDSA P-256 and P-384, RSA 2048,
-- 3072 and 4096). Older binaries never read the column and accept any of those, as before.

ALTER TABLE tenants ADD COLUMN certificate_key_algorithms text[] NOT NULL DEFAULT '{}'
  CHECK (cardinality(certificate_key_algorithms) <= 8
         AND certificate_key_algorithms <@
             ARRAY['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096']);
