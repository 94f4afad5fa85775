-- The outbox of docs/consumers.md, with its notifying trigger: what
-- tests/consumers.rs and loadtest/consumers.sh make, and a start for yours.
-- Safe to run again.
CREATE TABLE IF NOT EXISTS switchyard_outbox (
  id bigserial PRIMARY KEY,
  channel text NOT NULL,
  data jsonb NOT NULL,
  idempotency_key text,
  tags jsonb,
  partition int NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION switchyard_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify(TG_TABLE_NAME, ''); RETURN NULL; END $$;
DROP TRIGGER IF EXISTS switchyard_outbox_notify ON switchyard_outbox;
CREATE TRIGGER switchyard_outbox_notify AFTER INSERT ON switchyard_outbox
  FOR EACH STATEMENT EXECUTE FUNCTION switchyard_outbox_notify();
