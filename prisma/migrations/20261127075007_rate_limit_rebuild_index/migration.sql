-- CreateIndex
CREATE INDEX "Action_spaceId_userId_type_createdAt_idx" ON "Action"("spaceId", "userId", "type", "createdAt" DESC);
