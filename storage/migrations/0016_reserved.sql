-- Reserved: migration 16 belongs to a change on another branch (0015 certificate key
-- algorithms, 0016 order replaces). This no-op only keeps this branch's numbering without gaps
-- so that 0017 applies; drop it when that branch's migration lands.
SELECT 1;
