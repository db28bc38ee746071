-- What the web view (`sweep serve`) asks of a sweep many times a second must not read all its
-- trials: its latest heartbeat (every epoch and every end moves it: the "has it changed" poll
-- and "last activity") and its best value so far, each one index lookup at 100,000 trials.
CREATE INDEX trials_sweep_heartbeat ON trials (sweep_id, heartbeat_at);
CREATE INDEX trials_sweep_status_best_acc ON trials (sweep_id, status, best_val_acc);
CREATE INDEX trials_sweep_status_best_loss ON trials (sweep_id, status, best_val_loss);
