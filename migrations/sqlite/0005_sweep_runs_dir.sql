-- Where a sweep's checkpoint directories are (absolute), so that `rm`, `gc` and the disk
-- figures of `show` and `report` find them whatever `--runs` the run was given.
ALTER TABLE sweeps ADD COLUMN runs_dir TEXT;
