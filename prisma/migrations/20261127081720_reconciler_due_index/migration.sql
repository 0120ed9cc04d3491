-- CreateIndex
CREATE INDEX "Action_status_scheduledFor_id_idx" ON "Action"("status", "scheduledFor", "id");
