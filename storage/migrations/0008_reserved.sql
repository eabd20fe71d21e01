-- Reserved number. Migration 0008 is developed on another branch at the same time as 0009;
-- this file only keeps the numbering contiguous (embed.sh refuses gaps) until that branch is
-- merged, and is then replaced by its migration. It changes nothing.
SELECT 1;
