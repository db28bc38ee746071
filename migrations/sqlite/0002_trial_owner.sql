-- Which process holds a running trial ("host/pid/start ticks"), so that several `sweep run`
-- processes can share one database and a trial left by a dead process can be taken over.
ALTER TABLE trials ADD COLUMN owner TEXT;
