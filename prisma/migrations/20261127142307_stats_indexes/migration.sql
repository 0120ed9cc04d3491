-- CreateIndex
CREATE INDEX "Action_spaceId_decidedAt_idx" ON "Action"("spaceId", "decidedAt");

-- CreateIndex
CREATE INDEX "Execution_startedAt_idx" ON "Execution"("startedAt");
