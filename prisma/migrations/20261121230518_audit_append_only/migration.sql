-- Written by hand (not generated from schema.prisma): the audit trail is append-only.
-- Rows may be inserted; UPDATE and DELETE (per row) and TRUNCATE (per statement) are refused.

-- CreateFunction
CREATE FUNCTION "audit_entry_append_only"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit entries are append-only: % on "AuditEntry" is not allowed', TG_OP
    USING HINT = 'Record a correction as a new audit entry instead.';
END;
$$;

-- CreateTrigger
CREATE TRIGGER "AuditEntry_refuse_update_delete"
  BEFORE UPDATE OR DELETE ON "AuditEntry"
  FOR EACH ROW EXECUTE FUNCTION "audit_entry_append_only"();

-- CreateTrigger
CREATE TRIGGER "AuditEntry_refuse_truncate"
  BEFORE TRUNCATE ON "AuditEntry"
  FOR EACH STATEMENT EXECUTE FUNCTION "audit_entry_append_only"();
