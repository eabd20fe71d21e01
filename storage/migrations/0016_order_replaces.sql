-- compatible_from: 15
-- The certificate a renewal order replaces, as its RFC 9773 CertID (issue 11, item 3): stored
-- with the order so the newOrder that any replica's step sends carries `replaces`, and the CA
-- can treat the order as the renewal it is. Older binaries never read it.

ALTER TABLE orders ADD COLUMN replaces text
  CHECK (replaces ~ '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' AND octet_length(replaces) <= 256);
