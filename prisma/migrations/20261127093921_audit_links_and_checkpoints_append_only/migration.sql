-- Written by hand (not generated from schema.prisma).

-- The links of a hash chain (format 2 of src/engine/audit.ts): given the chain's head `prev`
-- and its length `seq`, the hash of each next entry i = sha256(prev_i || LF || (seq + i) || LF || content_i),
-- hex, where content_i is the hex SHA-256 of the entry's canonical content. The lifecycle
-- writer calls it inside the statement that moves the action, under that row's lock.
CREATE FUNCTION "ae_audit_links"(prev text, seq integer, contents text[]) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  links text[] := '{}';
  h text := prev;
BEGIN
  FOR i IN 1 .. coalesce(array_length(contents, 1), 0) LOOP
    h := encode(sha256(convert_to(h || E'\n' || (seq + i)::text || E'\n' || contents[i], 'UTF8')), 'hex');
    links := links || h;
  END LOOP;
  RETURN links;
END;
$$;

-- Checkpoints are append-only too.
CREATE TRIGGER "AuditCheckpoint_refuse_update_delete"
  BEFORE UPDATE OR DELETE ON "AuditCheckpoint"
  FOR EACH ROW EXECUTE FUNCTION "audit_entry_append_only"();

CREATE TRIGGER "AuditCheckpoint_refuse_truncate"
  BEFORE TRUNCATE ON "AuditCheckpoint"
  FOR EACH STATEMENT EXECUTE FUNCTION "audit_entry_append_only"();

-- At most one OPEN manual task per action: the lifecycle writer's "waiting" step inserts it with
-- ON CONFLICT DO NOTHING, so retries, recovered jobs and racing workers never make a second one.
CREATE UNIQUE INDEX "ManualTask_one_open_per_action" ON "ManualTask"("actionId") WHERE "status" = 'OPEN';
