-- The trials a trial trained fused with (`[sweep] fuse`), as comma-separated ids; NULL when it
-- trained alone.
ALTER TABLE trials ADD COLUMN fused_with TEXT;
