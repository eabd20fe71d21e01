-- compatible_from: 26
-- What the CRLs said about a certificate (issue 11: a certificate revoked outside the service
-- at a CA without ARI): when its CRL is read again (crl_next_check), and, once a CRL of its
-- issuer lists it, when it was revoked there and why (revoked_outside_at and _reason, set once:
-- the CA never unlists a revoked certificate, RFC 5280 §3.3, and keeping the first answer
-- keeps the audit row's word). Columns no older binary reads, so they are admitted.

ALTER TABLE certificates ADD COLUMN crl_next_check timestamptz;
ALTER TABLE certificates ADD COLUMN revoked_outside_at timestamptz;
ALTER TABLE certificates ADD COLUMN revoked_outside_reason smallint
  CHECK (revoked_outside_reason BETWEEN 0 AND 10);
