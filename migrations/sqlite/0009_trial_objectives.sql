-- What multi-objective sweeps trade off against accuracy: the model's trainable parameters
-- (known once it is built), its evaluation time per image at batch 1 (measured when a sweep
-- optimises it), and the mean seconds of an epoch's training batches (updated every epoch).
ALTER TABLE trials ADD COLUMN params INTEGER;
ALTER TABLE trials ADD COLUMN latency_ms REAL;
ALTER TABLE trials ADD COLUMN epoch_seconds REAL;
