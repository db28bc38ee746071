-- Seconds of an epoch's training batches alone (without validation), for benchmarks.
ALTER TABLE epochs ADD COLUMN train_seconds REAL;
