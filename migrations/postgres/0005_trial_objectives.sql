-- What multi-objective sweeps trade off against accuracy: the model's trainable parameters
-- (known once it is built), its evaluation time per image at batch 1 (measured when a sweep
-- optimises it), and the mean seconds of an epoch's training batches (updated every epoch).
ALTER TABLE trials ADD COLUMN params BIGINT;
ALTER TABLE trials ADD COLUMN latency_ms DOUBLE PRECISION;
ALTER TABLE trials ADD COLUMN epoch_seconds DOUBLE PRECISION;
