-- CreateIndex
CREATE INDEX "Action_spaceId_decidedAt_idx" ON "Action"("spaceId", "decidedAt");
