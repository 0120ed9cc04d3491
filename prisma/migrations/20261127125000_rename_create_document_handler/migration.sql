-- Hand-written, data only: the handler `create-document.filesystem` is now called by its
-- contract name `create_document.filesystem` (spec §10). Executions keep working for rollback
-- and stored configurations keep applying. Receipts and audit entries are history (and signed or
-- hash-chained): they keep the name they were written with.
UPDATE "Execution" SET "handler" = 'create_document.filesystem' WHERE "handler" = 'create-document.filesystem';
UPDATE "HandlerConfig" SET "handler" = 'create_document.filesystem', "configKey" = replace("configKey", ':create-document.filesystem:', ':create_document.filesystem:')
  WHERE "handler" = 'create-document.filesystem';
