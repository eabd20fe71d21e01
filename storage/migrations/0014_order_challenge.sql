-- compatible_from: 13
-- An order's challenge preference (issue 10): a request that asked for DNS-01 had it known only
-- to the replica that made the order, so a step on another replica answered HTTP-01. Stored with
-- the order, every replica's step answers as asked. Older binaries never read it and make
-- orders with the default (HTTP-01, a wildcard's authorization DNS-01 whatever it says).

ALTER TABLE orders ADD COLUMN prefer_dns01 boolean NOT NULL DEFAULT false;
