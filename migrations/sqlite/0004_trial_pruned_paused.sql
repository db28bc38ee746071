-- Early stopping ends trials as `pruned`, or `paused` at a rung until promoted. SQLite cannot
-- change a CHECK constraint in place, so the table is rebuilt. Migrations run inside a
-- transaction, where foreign keys stay on: dropping `trials` would cascade to its children,
-- and renaming it would repoint them. So the children are copied aside and dropped first, then
-- `trials` is rebuilt, then the children are recreated as they were and refilled.
CREATE TABLE trials_copy AS SELECT * FROM trials;
CREATE TABLE epochs_copy AS SELECT * FROM epochs;
CREATE TABLE checkpoints_copy AS SELECT * FROM checkpoints;
CREATE TABLE class_metrics_copy AS SELECT * FROM class_metrics;
CREATE TABLE confusion_copy AS SELECT * FROM confusion;
DROP TABLE epochs;
DROP TABLE checkpoints;
DROP TABLE class_metrics;
DROP TABLE confusion;
DROP TABLE trials;

CREATE TABLE trials (
    id            INTEGER PRIMARY KEY,
    sweep_id      INTEGER NOT NULL REFERENCES sweeps(id) ON DELETE CASCADE,
    ordinal       INTEGER NOT NULL,
    trial_key     TEXT NOT NULL,
    params_json   TEXT NOT NULL,
    arch          TEXT NOT NULL,
    optimizer     TEXT NOT NULL,
    lr            REAL NOT NULL,
    batch_size    INTEGER NOT NULL,
    epochs        INTEGER NOT NULL,
    dropout       REAL NOT NULL,
    weight_decay  REAL NOT NULL,
    split         REAL NOT NULL,
    seed          INTEGER NOT NULL,
    repeat        INTEGER NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'done', 'failed', 'diverged',
                                    'interrupted', 'pruned', 'paused')),
    device        TEXT,
    threads       INTEGER,
    started_at    TEXT,
    finished_at   TEXT,
    heartbeat_at  TEXT,
    duration_s    REAL,
    epochs_done   INTEGER NOT NULL DEFAULT 0,
    train_loss    REAL,
    train_acc     REAL,
    val_loss      REAL,
    val_acc       REAL,
    best_epoch    INTEGER,
    best_val_acc  REAL,
    best_val_loss REAL,
    test_loss     REAL,
    test_acc      REAL,
    error         TEXT,
    owner         TEXT,
    UNIQUE (sweep_id, trial_key)
);
INSERT INTO trials SELECT * FROM trials_copy;
CREATE INDEX trials_sweep_status ON trials (sweep_id, status);

CREATE TABLE epochs (
    trial_id      INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    epoch         INTEGER NOT NULL,
    train_loss    REAL,
    train_acc     REAL,
    val_loss      REAL,
    val_acc       REAL,
    seconds       REAL NOT NULL,
    recorded_at   TEXT NOT NULL,
    train_seconds REAL,
    PRIMARY KEY (trial_id, epoch)
);
INSERT INTO epochs SELECT * FROM epochs_copy;

CREATE TABLE checkpoints (
    trial_id   INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('last', 'best')),
    epoch      INTEGER NOT NULL,
    path       TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (trial_id, kind)
);
INSERT INTO checkpoints SELECT * FROM checkpoints_copy;

CREATE TABLE class_metrics (
    trial_id INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    class    INTEGER NOT NULL,
    correct  INTEGER NOT NULL,
    total    INTEGER NOT NULL,
    accuracy REAL,
    PRIMARY KEY (trial_id, class)
);
INSERT INTO class_metrics SELECT * FROM class_metrics_copy;

CREATE TABLE confusion (
    trial_id  INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    actual    INTEGER NOT NULL,
    predicted INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (trial_id, actual, predicted)
);
INSERT INTO confusion SELECT * FROM confusion_copy;

DROP TABLE trials_copy;
DROP TABLE epochs_copy;
DROP TABLE checkpoints_copy;
DROP TABLE class_metrics_copy;
DROP TABLE confusion_copy;
