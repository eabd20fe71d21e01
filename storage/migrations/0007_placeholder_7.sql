-- Placeholder for migration 7, which another branch adds: migration numbers run 1, 2, 3, ...
-- without gaps, and this branch's own migration comes after it. Drop this file when the branch
-- that owns number 7 is merged; it does nothing.
SELECT 1;
