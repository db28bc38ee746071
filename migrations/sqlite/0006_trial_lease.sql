-- A holder's claim on a running trial is a lease: the number goes up at every claim and takeover,
-- and every write for the trial names the lease it was made under, so a holder that lost the
-- trial (stopped past the heartbeat timeout, then continued) has its writes refused.
ALTER TABLE trials ADD COLUMN lease INTEGER NOT NULL DEFAULT 0;
