-- Population-based training: each exploit step, in which a member continued after `epoch`
-- from the weights of member `donor_id`, with its explored hyperparameters before and after
-- (JSON arrays of [name, value]). One per member and epoch, so a step is never recorded twice.
CREATE TABLE trial_copies (
    trial_id    BIGINT NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    epoch       BIGINT NOT NULL,
    donor_id    BIGINT NOT NULL,
    donor_value DOUBLE PRECISION,
    value       DOUBLE PRECISION,
    before_json TEXT NOT NULL,
    after_json  TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (trial_id, epoch)
);
